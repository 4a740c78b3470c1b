#pragma once
// Memory per rank (one NeuronCore, or logical core under LNC): weights, gradients, optimizer states,
// activations kept for the backward under the recompute mode and pipeline schedule, and workspace.
// Formulas and their sources: docs/workload.md ("Memory").

#include <string>
#include <vector>

#include "trnsim/core/units.h"
#include "trnsim/workload/model.h"
#include "trnsim/workload/placement.h"
#include "trnsim/workload/program.h"
#include "trnsim/workload/training.h"

namespace trnsim::workload {

// Bytes one rank stores for the backward per micro-batch. Generalises Korthikanti et al. 2022 ("Reducing
// Activation Recomputation in Large Transformer Models", Sec. 4) to GQA, SwiGLU, RMSNorm and no dropout;
// for a GPT layer (MHA, GELU, f = 4h, dropout) it is exactly their s b h (34 + 5 a s / h) (no parallelism),
// s b h (10 + 24/t + 5 a s / (h t)) (TP), s b h / t (34 + 5 a s / h) (TP + SP), with selective recompute the
// same without the 5 a s / h terms, and 2 s b h (/ t with SP) with full recompute. With flash attention the
// 5 a s / h terms become the FP32 row log-sum-exp, 4 b a s / t bytes, kept also under selective recompute.
struct ActivationBytes {
    double per_layer = 0;  // one transformer layer
    // Of per_layer (unless selective recompute drops it): the attention core's stored tensors. Unfused: the
    // s^2 terms (softmax output, dropout mask and output); flash: the FP32 log-sum-exp per query row.
    double attention_core = 0;
    double embedding_extra = 0;  // first chunk: embedding dropout mask
    double head_extra = 0;       // last chunk: final-norm input, head input(s), FP32 softmax of the logits
};
ActivationBytes activation_bytes(const ModelSpec& model, const TrainingSpec& training);

// Micro-batches whose activations chunk `local_chunk` of pipeline stage `stage` holds at the peak:
// gpipe: all of them; 1f1b: min(m, pp - stage) (Narayanan et al. 2021, Sec. 2.2.1); interleaved: the
// forward passes of Megatron-LM's warm-up, (pp - stage - 1) * 2 + (v - 1) * pp, plus the first steady-state
// forward, attributed to chunks in Megatron-LM's order (groups of pp micro-batches per chunk). For stage 0
// this is L (1 + (p - 1) / (p v)) layers' worth (Korthikanti et al. 2022, Sec. 4.2.3).
int microbatches_in_flight(const TrainingSpec& training, int stage, int local_chunk);

struct MemoryFootprint {
    int stage = 0;
    double params = 0;       // parameters this rank holds
    double weights = 0;      // bf16 working weights, 2 B per parameter
    double gradients = 0;    // grad_dtype per parameter (not sharded by ZeRO-1)
    double optimizer = 0;    // FP32 master weight + Adam m + v = 12 B per owned parameter (1/dp with ZeRO-1)
    double activations = 0;  // stored for the backward, all micro-batches in flight
    double activations_per_microbatch = 0;  // all chunks of this stage, one micro-batch each
    int in_flight = 0;                      // micro-batches in flight summed over the chunks
    double workspace = 0;                   // transient: largest backward op output, recompute set, DP bucket
    double total = 0;
    std::string breakdown() const;  // "weights 1.2 GiB, gradients ..., ..."
};

MemoryFootprint memory_footprint(const ModelSpec& model, const TrainingSpec& training, const StageProgram& program);
MemoryFootprint memory_footprint(const ModelSpec& model, const TrainingSpec& training, int stage);
std::vector<MemoryFootprint> memory_footprints(const ModelSpec& model, const TrainingSpec& training);

struct CapacityCheck {
    bool fits = true;
    double required = 0;  // bytes on the fullest device: the footprints of its ranks, summed
    double capacity = 0;
    // The fullest device (the first of equals), in rank order: ranks device x k to device x k + k - 1, with k ranks
    // per device (which chip of the topology takes them is the runtime's layout).
    int device = 0;
    std::string message;  // empty when it fits; otherwise the numbers and what could help
};
// Checks each device (e.g. one chip, whose HBM its logical cores share) against its memory: ranks are placed
// `ranks_per_device` to a device in rank order (Placement::chip_of), and a device holds the footprints of its
// ranks' stages, summed. The hints in the message leave out what `training` already does. The caller decides
// whether to throw or flag (--allow-oom).
CapacityCheck check_capacity(const std::vector<MemoryFootprint>& per_stage, const TrainingSpec& training,
                             const Placement& placement, int ranks_per_device, Bytes capacity,
                             const std::string& device = "chip");

}  // namespace trnsim::workload
