#pragma once
// Training options and parallelism of one run (`TrainingSpec`), validated against a model. The names of
// the fields are the `trnsim run` flags (--seq, --mbs, ...), and errors name those flags.

#include <cstdint>
#include <string>

#include "trnsim/core/numeric.h"
#include "trnsim/core/units.h"
#include "trnsim/workload/model.h"

namespace trnsim::workload {

enum class Recompute { none, selective, full };
// How the attention core (QK^T, softmax, dropout, AV) runs. unfused: batched GEMMs and a softmax kernel with
// the s x s scores in memory. flash: one fused kernel per direction that keeps the scores on chip (Dao et al.
// 2022, "FlashAttention"; the Neuron stack's NKI flash_fwd / flash_attn_bwd kernels).
enum class Attention { unfused, flash };
enum class PipelineSchedule { one_f_one_b, gpipe, interleaved };

const char* recompute_name(Recompute r);        // none | selective | full
const char* attention_name(Attention a);        // unfused | flash
const char* schedule_name(PipelineSchedule s);  // 1f1b | gpipe | interleaved
bool parse_recompute(const std::string& text, Recompute& out);
bool parse_attention(const std::string& text, Attention& out);
bool parse_schedule(const std::string& text, PipelineSchedule& out);

struct TrainingSpec {
    std::int64_t seq = 2048;  // tokens per sequence
    std::int64_t mbs = 1;     // micro-batch: sequences per micro-batch per data-parallel replica
    std::int64_t gbs = 1;     // global batch: sequences per optimizer step over all replicas
    // GEMM input precision. fp8: forward GEMMs in E4M3, backward (gradient) GEMMs in E5M2, the hybrid
    // recipe of Micikevicius et al. 2022 ("FP8 Formats for Deep Learning"); everything else stays bf16.
    DType dtype = DType::bf16;
    Recompute recompute = Recompute::none;
    // unfused here; `trnsim run` defaults to flash, as AWS's Llama 3 8B trn2 configuration runs (docs/workload.md).
    Attention attention = Attention::unfused;
    int tp = 1;
    int pp = 1;
    int dp = 1;
    bool sp = false;  // sequence parallelism (needs tp > 1 to matter; Korthikanti et al. 2022)
    int zero = 0;     // 0: replicated optimizer, gradient all-reduce; 1: ZeRO-1 (Rajbhandari et al. 2020)
    PipelineSchedule schedule = PipelineSchedule::one_f_one_b;
    int virtual_stages = 1;  // model chunks per pipeline stage; > 1 only with the interleaved schedule
    // Data-parallel gradient bucket. 25 MiB is PyTorch DDP's default bucket_cap_mb (torch.nn.parallel.
    // DistributedDataParallel documentation).
    Bytes dp_bucket{25ull << 20};
    // Gradient accumulation and reduction dtype. fp32 by default, as Megatron-LM does for bf16 training
    // (accumulate_allreduce_grads_in_fp32); bf16 halves gradient memory and DP traffic.
    DType grad_dtype = DType::fp32;

    // gbs / (mbs * dp): micro-batches per replica per step.
    std::int64_t grad_accum_steps() const { return gbs / (mbs * dp); }
    std::int64_t tokens_per_step() const { return gbs * seq; }
    int ranks() const { return tp * pp * dp; }
    // Pipeline chunks over the model: pp * virtual_stages (1 chunk per stage unless interleaved).
    int chunks() const { return pp * virtual_stages; }
    // KV heads held per tensor-parallel rank: kv_heads / tp when tp divides kv_heads; otherwise (tp a
    // multiple of kv_heads) each rank holds one KV head, replicated tp / kv_heads times, as Neuron's
    // kv_replicator does (GQAQKVColumnParallelLinear).
    std::int64_t kv_heads_per_rank(const ModelSpec& m) const;
    std::int64_t kv_replication(const ModelSpec& m) const;  // 1, or tp / kv_heads

    // Throws UserError naming the flag (--tp, --gbs, ...), the reason and what is allowed.
    void validate(const ModelSpec& model) const;
    std::string describe() const;  // one line: "seq 2048 mbs 1 gbs 1024 dtype bf16 recompute none attention ..."
};

}  // namespace trnsim::workload
