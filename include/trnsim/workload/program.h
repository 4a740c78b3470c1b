#pragma once
// The training step as an op graph per rank. For a pipeline stage, one representative rank's work (all
// tensor-parallel peers of a stage and all data-parallel replicas run the same program on their own
// shards; placement.h groups them): per model chunk the ops of one micro-batch forward and backward, and
// the ops once per step after the last micro-batch (DP gradient synchronisation, clipping, AdamW, ZeRO-1
// parameter all-gather). Compute ops carry a kernel descriptor the NeuronCore lowering understands
// (lowering::KernelRequest ops) or a memory-bound stream descriptor; communication ops carry the
// collective, its group and the bytes per rank. docs/workload.md explains every op and approximation.

#include <cstdint>
#include <string>
#include <vector>

#include "trnsim/core/numeric.h"
#include "trnsim/workload/model.h"
#include "trnsim/workload/training.h"

namespace trnsim::workload {

enum class Phase { fwd, bwd, recompute, optimizer };
enum class CommKind { all_reduce, reduce_scatter, all_gather, send, recv };
// tp, pp, dp: the parallel groups. embedding: the first and last pipeline stage of the same (tp, dp)
// coordinate, which share the tied embedding (Megatron-LM's embedding group). world: every rank.
enum class CommGroup { tp, pp, dp, embedding, world };

const char* phase_name(Phase p);         // fwd | bwd | recompute | optimizer
const char* comm_kind_name(CommKind k);  // all-reduce | reduce-scatter | all-gather | send | recv
const char* comm_group_name(CommGroup g);

struct KernelDesc {
    // gemm | layernorm | rmsnorm | softmax | gelu | silu (lowering::kernel_ops()); flash_fwd | flash_bwd: the
    // fused attention core of one layer (TrainingSpec::attention == flash); or stream: a memory-bound
    // elementwise / gather / reduction op the lowering has no kernel for, timed from its bytes and flops.
    std::string op;
    // gemm: independent GEMMs of one shape (attention: mbs x heads per rank); flash: (sequence, query head)
    // pairs, mbs x heads per rank.
    std::int64_t batch = 1;
    // gemm: (m x k) . (k x n). flash: m queries (the sequence), n keys (the sequence), k the head dimension.
    std::int64_t m = 0, k = 0, n = 0;
    std::int64_t rows = 0, cols = 0;  // row-wise kernels
    DType dtype = DType::bf16;        // flash: always bf16 (the NKI flash kernels are bf16, also in fp8 training)
    bool causal = false;              // flash: causal mask (decoders); false for the encoder (BERT)
    bool dropout = false;             // flash: attention dropout (the model's `dropout`)
    int passes = 1;  // row-wise kernels: how many times the kernel of this shape stands in (backward: 2)
    // stream only
    double bytes_read = 0;
    double bytes_written = 0;
    double stream_flops = 0;
};

struct CommDesc {
    CommKind kind = CommKind::all_reduce;
    CommGroup group = CommGroup::tp;
    // Per rank, in the runtime's convention (runtime::CollectiveRequest): all-reduce and reduce-scatter:
    // the input buffer; all-gather: the gathered output; send/recv: the message.
    std::uint64_t bytes = 0;
    DType dtype = DType::bf16;
    int peer_stage = -1;  // send/recv: the pipeline stage sent to or received from
};

struct Op {
    std::string name;  // stable: "L3.attn.qkv.fwd", "head.logits.wgrad", "dp.grad.ar.b0", ...
    Phase phase = Phase::fwd;
    bool is_comm = false;
    KernelDesc kernel;  // compute ops
    CommDesc comm;      // communication ops
    double flops = 0;   // arithmetic operations on this rank (GEMM: 2 m k n per batch entry; 0 for comm)
    // Of flops: the matrix products (the HFU numerator's part). GEMMs: all of flops; flash attention: its
    // QK^T, AV (forward) and QK^T, dV, dP, dQ, dK (backward) products, each 2 m k n per batch entry.
    double gemm_flops = 0;
    double bytes = 0;       // compute: DRAM bytes read + written once; comm: comm.bytes
    std::vector<int> deps;  // indices into the same op list that must finish first
    int layer = -1;         // global transformer layer, -1 outside layers
    // Parameters whose gradient this op completes (wgrad GEMMs with their biases, norm backward,
    // embedding backward). Their sum over a stage's backward is the parameter count of one rank.
    double param_grads = 0;
    // Step ops only: a DP gradient bucket may start once op `after_op` of chunk `after_chunk`'s backward
    // of the last micro-batch has finished (-1: no such constraint).
    int after_chunk = -1;
    int after_op = -1;

    bool is_gemm() const { return !is_comm && kernel.op == "gemm"; }
    bool is_flash() const { return !is_comm && (kernel.op == "flash_fwd" || kernel.op == "flash_bwd"); }
};

using OpList = std::vector<Op>;

// One model chunk held by a stage (one per stage, or virtual_stages per stage when interleaved).
struct ChunkProgram {
    int local_chunk = 0;   // index on this stage
    int global_chunk = 0;  // position in the model: local_chunk * pp + stage
    int first_layer = 0;
    int num_layers = 0;
    bool has_embedding = false;  // global chunk 0
    bool has_head = false;       // last global chunk: final norm, LM (or MLM) head and loss
    OpList forward;              // one micro-batch
    OpList backward;             // one micro-batch, recompute ops included
    double params = 0;           // parameters one rank holds for this chunk
};

struct StageProgram {
    int stage = 0;
    std::vector<ChunkProgram> chunks;
    OpList step;        // once per step, after the last micro-batch
    double params = 0;  // parameters one rank of this stage holds (sum over chunks)
};

// Builds the program of pipeline stage `stage`. Validates the inputs (TrainingSpec::validate).
StageProgram build_stage_program(const ModelSpec& model, const TrainingSpec& training, int stage);
std::vector<StageProgram> build_all_stages(const ModelSpec& model, const TrainingSpec& training);

// FLOPs of one step.
struct StepFlops {
    // The MFU numerator, Narayanan et al. 2021 eq. (3) generalised: 6 N_matmul tokens + 12 L s (a d) tokens,
    // N_matmul = parameter_count().matmul (projections + LM head), attention counted as the full s x s
    // square (no causal halving), no recompute. For GPT (f = 4h, MHA) it is 72 B s L h^2 (1 + s/6h + V/12hL).
    double model = 0;
    // Matrix-product FLOPs in the graph over all ranks (Op::gemm_flops), recompute included (HFU numerator):
    // the GEMMs, and with flash attention the fused kernels' products, the backward's recomputed QK^T
    // included. Attention is counted as the full s x s square, as in `model`, also for a causal flash
    // kernel, which executes about half of it (docs/workload.md).
    double graph_gemm = 0;
    double graph_total = 0;  // all FLOPs in the graph over all ranks (GEMMs, flash, row-wise, streams, optimizer)
    // Of graph_total: the recompute-phase ops (selective or full recompute). Not the flash backward's
    // in-kernel recompute of QK^T, which is part of its bwd op (counted in graph_gemm).
    double graph_recompute = 0;
};
double model_flops_per_step(const ModelSpec& model, const TrainingSpec& training);
StepFlops step_flops(const ModelSpec& model, const TrainingSpec& training);
StepFlops step_flops(const std::vector<StageProgram>& stages, const ModelSpec& model, const TrainingSpec& training);

// FLOPs of an op list: all of them, or only the matrix products (Op::gemm_flops).
double sum_flops(const OpList& ops, bool gemm_only = false);

}  // namespace trnsim::workload
