#include "trnsim/workload/memory.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace trnsim::workload {

namespace {

constexpr double k_act = 2.0;  // bf16 activations

std::string gib(double bytes) {
    return fmt::format("{:.2f} GiB", bytes / double(1ull << 30));
}

// Largest tensor one op of the list writes.
double largest_output(const OpList& ops) {
    double out = 0;
    for (const auto& op : ops) {
        if (op.is_comm) continue;
        const auto& k = op.kernel;
        double bytes = 0;
        if (k.op == "gemm") {
            bytes = static_cast<double>(k.batch) * static_cast<double>(k.m) * static_cast<double>(k.n) * k_act;
        } else if (op.is_flash()) {
            // O (forward) or each of dQ, dK, dV (backward): batch x queries x head dimension.
            bytes = static_cast<double>(k.batch) * static_cast<double>(k.m) * static_cast<double>(k.k) * k_act;
        } else if (k.op == "stream") {
            bytes = k.bytes_written;
        } else {
            bytes = static_cast<double>(k.rows) * static_cast<double>(k.cols) * k_act;
        }
        out = std::max(out, bytes);
    }
    return out;
}

}  // namespace

ActivationBytes activation_bytes(const ModelSpec& m, const TrainingSpec& t) {
    const double b = static_cast<double>(t.mbs), s = static_cast<double>(t.seq), T = b * s;
    const double h = static_cast<double>(m.hidden), d = static_cast<double>(m.head_dim());
    const double tp = t.tp;
    const double a_r = static_cast<double>(m.heads) / tp;
    const double kv_r = static_cast<double>(t.kv_heads_per_rank(m));
    const double f_r = static_cast<double>(m.ffn_hidden) / tp;
    const double sh = t.sp ? 1.0 / tp : 1.0;  // sequence-sharded tensors (norms, dropouts, residuals)
    const double drop = m.dropout ? 1.0 : 0.0;
    ActivationBytes a;
    // Attention block: norm input, QKV input (the norm output; with SP stored sharded and gathered again),
    // Q and K (after RoPE), V, output-projection input, output dropout mask (1 B per element).
    const double attn = k_act * T * h * sh + k_act * T * h * sh + k_act * T * (a_r + kv_r) * d + k_act * T * kv_r * d +
                        k_act * T * a_r * d + drop * T * h * sh;
    // Attention core. Unfused: softmax output; with dropout its 1 B mask and its output (the AV input).
    // Flash: the FP32 row log-sum-exp of the scores (4 B per query row), from which the backward recomputes
    // the softmax; the dropout mask is regenerated from the RNG seed, not stored.
    const bool flash = t.attention == Attention::flash;
    a.attention_core = flash ? 4 * b * a_r * s : k_act * b * a_r * s * s + drop * (1 + k_act) * b * a_r * s * s;
    // MLP block: norm input, up-projection input, then GELU: its input and the down-projection input;
    // SwiGLU: its two inputs (gate, up) and the down-projection input (silu(gate) is recomputed in the
    // backward, as Megatron-LM's fused SwiGLU does); output dropout mask.
    const double act = m.activation == Activation::swiglu ? 3 * k_act * T * f_r : 2 * k_act * T * f_r;
    const double mlp = 2 * k_act * T * h * sh + act + drop * T * h * sh;
    switch (t.recompute) {
        case Recompute::none: a.per_layer = attn + a.attention_core + mlp; break;
        // Selective: the unfused core is recomputed, so not stored; flash has nothing to recompute and keeps
        // its log-sum-exp.
        case Recompute::selective: a.per_layer = attn + mlp + (flash ? a.attention_core : 0.0); break;
        case Recompute::full: a.per_layer = k_act * T * h * sh; break;  // the layer input only
    }
    a.embedding_extra = drop * T * h * sh;
    // Final-norm input and head input (sequence-sharded with SP), the FP32 softmax of the vocabulary-parallel
    // logits (Korthikanti et al. 2022 Sec. 4.3: 4 s b h / t (1 + v / h) with SP).
    const double v_r = std::ceil(static_cast<double>(m.vocab) / tp);
    a.head_extra = 2 * k_act * T * h * sh + 4 * T * v_r;
    // BERT MLM head (replicated on TP ranks): the transform's output before GELU, before the norm, and the
    // logits GEMM input.
    if (m.arch == Arch::encoder) a.head_extra += 3 * k_act * T * h;
    return a;
}

int microbatches_in_flight(const TrainingSpec& t, int stage, int local_chunk) {
    const std::int64_t m = t.grad_accum_steps();
    switch (t.schedule) {
        case PipelineSchedule::gpipe: return static_cast<int>(m);
        case PipelineSchedule::one_f_one_b: return static_cast<int>(std::min<std::int64_t>(m, t.pp - stage));
        case PipelineSchedule::interleaved: {
            const std::int64_t total = m * t.virtual_stages;
            const std::int64_t warmup =
                std::min<std::int64_t>(total, static_cast<std::int64_t>(t.pp - stage - 1) * 2 +
                                                  static_cast<std::int64_t>(t.virtual_stages - 1) * t.pp);
            const std::int64_t peak = std::min<std::int64_t>(total, warmup + 1);
            int count = 0;
            for (std::int64_t k = 0; k < peak; ++k) {
                const std::int64_t chunk = (k % (static_cast<std::int64_t>(t.pp) * t.virtual_stages)) / t.pp;
                if (chunk == local_chunk) ++count;
            }
            return count;
        }
    }
    return 0;
}

MemoryFootprint memory_footprint(const ModelSpec& m, const TrainingSpec& t, const StageProgram& prog) {
    MemoryFootprint f;
    f.stage = prog.stage;
    f.params = prog.params;
    f.weights = 2.0 * f.params;
    f.gradients = static_cast<double>(dtype_bytes(t.grad_dtype)) * f.params;
    const double owned = t.zero == 1 ? std::ceil(f.params / t.dp) : f.params;
    f.optimizer = 12.0 * owned;
    const ActivationBytes a = activation_bytes(m, t);
    double transient = 0;
    for (const auto& c : prog.chunks) {
        const double per_mb = c.num_layers * a.per_layer + (c.has_embedding ? a.embedding_extra : 0.0) +
                              (c.has_head ? a.head_extra : 0.0);
        const int n = microbatches_in_flight(t, prog.stage, c.local_chunk);
        f.in_flight += n;
        f.activations += n * per_mb;
        f.activations_per_microbatch += per_mb;
        transient = std::max(transient, largest_output(c.backward));
    }
    // Workspace (assumption: no allocator fragmentation, no framework buffers): the largest output of one
    // backward op (a gradient such as d logits or d scores, live next to the stored activations at the peak),
    // the working set of the layer being recomputed (full: one layer's activations without recompute;
    // selective: one unfused attention core; nothing with flash attention, whose backward keeps its
    // recomputed scores on chip), and one DP gradient bucket being reduced.
    TrainingSpec no_recompute = t;
    no_recompute.recompute = Recompute::none;
    const ActivationBytes full_layer = activation_bytes(m, no_recompute);
    double recompute_set = 0;
    if (t.recompute == Recompute::full) recompute_set = full_layer.per_layer;
    if (t.recompute == Recompute::selective && t.attention == Attention::unfused) {
        recompute_set = full_layer.attention_core;
    }
    const double bucket = t.dp > 1 ? static_cast<double>(t.dp_bucket.count) : 0.0;
    f.workspace = transient + recompute_set + bucket;
    f.total = f.weights + f.gradients + f.optimizer + f.activations + f.workspace;
    return f;
}

MemoryFootprint memory_footprint(const ModelSpec& m, const TrainingSpec& t, int stage) {
    return memory_footprint(m, t, build_stage_program(m, t, stage));
}

std::vector<MemoryFootprint> memory_footprints(const ModelSpec& m, const TrainingSpec& t) {
    std::vector<MemoryFootprint> out;
    for (int s = 0; s < t.pp; ++s) out.push_back(memory_footprint(m, t, s));
    return out;
}

std::string MemoryFootprint::breakdown() const {
    return fmt::format(
        "weights {}, gradients {}, optimizer states {}, activations {} ({} forward pass(es) of its chunks in flight, "
        "{} each on average), "
        "workspace {}",
        gib(weights), gib(gradients), gib(optimizer), gib(activations), in_flight,
        gib(in_flight > 0 ? activations / in_flight : 0.0), gib(workspace));
}

CapacityCheck check_capacity(const std::vector<MemoryFootprint>& per_stage, const TrainingSpec& training,
                             const Placement& placement, int ranks_per_device, Bytes capacity,
                             const std::string& device) {
    CapacityCheck c;
    c.capacity = static_cast<double>(capacity.count);
    if (per_stage.empty() || ranks_per_device < 1) return c;
    // Per device, its ranks by stage; the fullest device.
    std::map<int, int> fullest;
    for (int first = 0; first < placement.ranks(); first += ranks_per_device) {
        std::map<int, int> ranks;  // stage -> ranks of it on this device
        double bytes = 0;
        for (int r = first; r < std::min(first + ranks_per_device, placement.ranks()); ++r) {
            const int stage = placement.coord(r).pp;
            ++ranks[stage];
            bytes += per_stage.at(static_cast<std::size_t>(stage)).total;
        }
        if (first == 0 || bytes > c.required) {
            c.required = bytes;
            c.device = Placement::chip_of(first, ranks_per_device);
            fullest = ranks;
        }
    }
    c.fits = c.required <= c.capacity;
    if (c.fits) return c;
    std::vector<std::string> parts;
    for (const auto& [stage, n] : fullest) {
        const MemoryFootprint& f = per_stage.at(static_cast<std::size_t>(stage));
        parts.push_back(fmt::format("{} rank(s) of pipeline stage {} x {}: {}", n, stage, gib(f.total), f.breakdown()));
    }
    std::vector<std::string> hints = {"more tensor or pipeline parallelism"};
    if (training.zero == 0 && training.dp > 1) hints.emplace_back("--zero 1");
    if (training.recompute == Recompute::none) hints.emplace_back("--recompute selective|full");
    if (training.recompute == Recompute::selective) hints.emplace_back("--recompute full");
    if (training.mbs > 1) hints.emplace_back("a smaller --mbs");
    const int first = c.device * ranks_per_device;
    const int last = std::min(first + ranks_per_device, placement.ranks()) - 1;
    c.message = fmt::format(
        "out of memory: the {} of ranks {}..{} needs {} ({}) but has {}; try {}, or --allow-oom to simulate anyway",
        device, first, last, gib(c.required), fmt::join(parts, "; "), gib(c.capacity), fmt::join(hints, ", "));
    return c;
}

}  // namespace trnsim::workload
