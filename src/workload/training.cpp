#include "trnsim/workload/training.h"

#include <fmt/format.h>

#include "trnsim/core/error.h"

namespace trnsim::workload {

const char* recompute_name(Recompute r) {
    switch (r) {
        case Recompute::none: return "none";
        case Recompute::selective: return "selective";
        case Recompute::full: return "full";
    }
    return "?";
}

const char* attention_name(Attention a) {
    switch (a) {
        case Attention::unfused: return "unfused";
        case Attention::flash: return "flash";
    }
    return "?";
}

const char* schedule_name(PipelineSchedule s) {
    switch (s) {
        case PipelineSchedule::one_f_one_b: return "1f1b";
        case PipelineSchedule::gpipe: return "gpipe";
        case PipelineSchedule::interleaved: return "interleaved";
    }
    return "?";
}

bool parse_recompute(const std::string& text, Recompute& out) {
    for (Recompute r : {Recompute::none, Recompute::selective, Recompute::full}) {
        if (text == recompute_name(r)) return out = r, true;
    }
    return false;
}

bool parse_attention(const std::string& text, Attention& out) {
    for (Attention a : {Attention::unfused, Attention::flash}) {
        if (text == attention_name(a)) return out = a, true;
    }
    return false;
}

bool parse_schedule(const std::string& text, PipelineSchedule& out) {
    for (PipelineSchedule s : {PipelineSchedule::one_f_one_b, PipelineSchedule::gpipe, PipelineSchedule::interleaved}) {
        if (text == schedule_name(s)) return out = s, true;
    }
    return false;
}

std::int64_t TrainingSpec::kv_heads_per_rank(const ModelSpec& m) const {
    return m.kv_heads % tp == 0 ? m.kv_heads / tp : 1;
}

std::int64_t TrainingSpec::kv_replication(const ModelSpec& m) const {
    return m.kv_heads % tp == 0 ? 1 : tp / m.kv_heads;
}

namespace {

std::string divisors(std::int64_t n, std::int64_t limit = 1 << 20) {
    std::string out;
    for (std::int64_t d = 1; d <= n && d <= limit; ++d) {
        if (n % d != 0) continue;
        if (out.size() > 100) return out + ", ...";
        out += (out.empty() ? "" : ", ") + std::to_string(d);
    }
    return out;
}

[[noreturn]] void fail(const std::string& flag, std::int64_t value, const std::string& why,
                       const std::string& allowed) {
    throw UserError(fmt::format("--{} {}: {}; allowed: {}", flag, value, why, allowed));
}

}  // namespace

void TrainingSpec::validate(const ModelSpec& m) const {
    if (seq < 1) fail("seq", seq, "must be positive", "an integer >= 1");
    if (m.position == Position::learned && seq > m.max_seq) {
        fail("seq", seq, fmt::format("{} has a learned position table of {} positions", m.name, m.max_seq),
             fmt::format("1..{}", m.max_seq));
    }
    if (mbs < 1) fail("mbs", mbs, "must be positive", "an integer >= 1");
    if (tp < 1) fail("tp", tp, "must be positive", "an integer >= 1");
    if (pp < 1) fail("pp", pp, "must be positive", "an integer >= 1");
    if (dp < 1) fail("dp", dp, "must be positive", "an integer >= 1");
    // Bounds of the models, not of training: a kernel dimension is at most 2^24 (the NeuronCore model's
    // largest), and token counts stay exact in a double.
    constexpr std::int64_t k_max_tokens_per_microbatch = std::int64_t{1} << 24;
    constexpr std::int64_t k_max_tokens_per_step = std::int64_t{1} << 53;
    if (seq > k_max_tokens_per_microbatch) {
        fail("seq", seq, fmt::format("a sequence is at most 2^24 tokens"),
             fmt::format("1..{}", k_max_tokens_per_microbatch));
    }
    if (mbs > k_max_tokens_per_microbatch / seq) {
        fail("mbs", mbs,
             fmt::format("a micro-batch of mbs x seq tokens is at most 2^24 = {}", k_max_tokens_per_microbatch),
             fmt::format("1..{}", k_max_tokens_per_microbatch / seq));
    }
    if (gbs > k_max_tokens_per_step / seq) {
        fail("gbs", gbs, fmt::format("a step of gbs x seq tokens is at most 2^53 = {}", k_max_tokens_per_step),
             fmt::format("1..{}", k_max_tokens_per_step / seq));
    }
    if (gbs < 1 || gbs % (mbs * dp) != 0) {
        fail("gbs", gbs,
             fmt::format("the global batch must be divisible by mbs x dp = {} x {} = {}", mbs, dp, mbs * dp),
             fmt::format("a positive multiple of {}", mbs * dp));
    }
    if (dtype != DType::bf16 && dtype != DType::fp8_e4m3) {
        throw UserError(fmt::format("--dtype {}: allowed: bf16, fp8", dtype_name(dtype)));
    }
    if (grad_dtype != DType::fp32 && grad_dtype != DType::bf16) {
        throw UserError(fmt::format("gradient dtype {}: allowed: fp32, bf16", dtype_name(grad_dtype)));
    }
    if (m.heads % tp != 0) {
        fail("tp", tp, fmt::format("tensor parallelism splits the {} attention heads of {}", m.heads, m.name),
             "a divisor of " + std::to_string(m.heads) + ": " + divisors(m.heads));
    }
    if (m.kv_heads % tp != 0 && tp % m.kv_heads != 0) {
        fail("tp", tp,
             fmt::format("{} has {} KV heads: tp must divide them, or be a multiple of them so that each rank "
                         "holds one replicated KV head (Neuron kv_replicator)",
                         m.name, m.kv_heads),
             fmt::format("a divisor or a multiple of {} that divides {}", m.kv_heads, m.heads));
    }
    if (m.ffn_hidden % tp != 0) {
        fail("tp", tp, fmt::format("tensor parallelism splits ffn_hidden = {} of {}", m.ffn_hidden, m.name),
             "a divisor of " + std::to_string(m.ffn_hidden));
    }
    if (sp) {
        if (tp < 2) {
            throw UserError("--sp: sequence parallelism shards along the tensor-parallel group and needs --tp > 1");
        }
        if (seq % tp != 0) {
            fail("seq", seq, fmt::format("with --sp the sequence is split over tp = {} ranks", tp),
                 fmt::format("a multiple of {}", tp));
        }
    }
    if (zero != 0 && zero != 1) fail("zero", zero, "unsupported ZeRO stage", "0, 1");
    if (virtual_stages < 1) fail("virtual-stages", virtual_stages, "must be positive", "an integer >= 1");
    if (schedule == PipelineSchedule::interleaved) {
        if (pp < 2) fail("pp", pp, "the interleaved schedule needs a pipeline", "an integer >= 2");
        if (virtual_stages < 2) {
            fail("virtual-stages", virtual_stages, "the interleaved schedule needs several model chunks per stage",
                 "an integer >= 2");
        }
        if (grad_accum_steps() % pp != 0) {
            fail("gbs", gbs,
                 fmt::format("the interleaved schedule needs the micro-batches per replica (gbs / (mbs x dp) = {}) "
                             "to be a multiple of pp = {} (as Megatron-LM requires)",
                             grad_accum_steps(), pp),
                 fmt::format("a multiple of {}", static_cast<std::int64_t>(pp) * mbs * dp));
        }
    } else if (virtual_stages != 1) {
        fail(
            "virtual-stages", virtual_stages,
            fmt::format("model chunks per stage need --schedule interleaved (schedule is {})", schedule_name(schedule)),
            "1");
    }
    const std::int64_t chunks_total = static_cast<std::int64_t>(pp) * virtual_stages;
    if (m.layers % chunks_total != 0) {
        if (virtual_stages > 1) {
            fail("pp", pp,
                 fmt::format("pp x virtual stages = {} x {} must divide the {} layers of {}", pp, virtual_stages,
                             m.layers, m.name),
                 fmt::format("pp x virtual stages among the divisors of {}: {}", m.layers, divisors(m.layers)));
        }
        fail("pp", pp, fmt::format("pipeline stages must divide the {} layers of {}", m.layers, m.name),
             "a divisor of " + std::to_string(m.layers) + ": " + divisors(m.layers));
    }
    if (dp_bucket.count == 0) throw UserError("DP bucket size must be positive");
}

std::string TrainingSpec::describe() const {
    return fmt::format(
        "seq {} mbs {} gbs {} dtype {} recompute {} attention {} tp {} pp {} dp {} sp {} zero {} schedule {}{} (grad "
        "accum {})",
        seq, mbs, gbs, dtype == DType::bf16 ? "bf16" : "fp8", recompute_name(recompute), attention_name(attention), tp,
        pp, dp, sp ? "on" : "off", zero, schedule_name(schedule),
        virtual_stages > 1 ? fmt::format(" x{} virtual", virtual_stages) : "", gbs / (mbs * dp));
}

}  // namespace trnsim::workload
