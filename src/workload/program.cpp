// The per-rank op graph of one training step. Shapes follow Megatron-LM tensor parallelism (Shoeybi et al.
// 2019: QKV and MLP-up column-parallel, attention output and MLP-down row-parallel) with sequence
// parallelism (Korthikanti et al. 2022, Sec. 4.2.2), pipeline chunks as in Narayanan et al. 2021, and
// AdamW with FP32 master weights and moments (mixed precision, Micikevicius et al. 2018). The approximations
// are listed in docs/workload.md.
#include "trnsim/workload/program.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "trnsim/core/error.h"

namespace trnsim::workload {

const char* phase_name(Phase p) {
    switch (p) {
        case Phase::fwd: return "fwd";
        case Phase::bwd: return "bwd";
        case Phase::recompute: return "recompute";
        case Phase::optimizer: return "optimizer";
    }
    return "?";
}

const char* comm_kind_name(CommKind k) {
    switch (k) {
        case CommKind::all_reduce: return "all-reduce";
        case CommKind::reduce_scatter: return "reduce-scatter";
        case CommKind::all_gather: return "all-gather";
        case CommKind::send: return "send";
        case CommKind::recv: return "recv";
    }
    return "?";
}

const char* comm_group_name(CommGroup g) {
    switch (g) {
        case CommGroup::tp: return "tp";
        case CommGroup::pp: return "pp";
        case CommGroup::dp: return "dp";
        case CommGroup::embedding: return "embedding";
        case CommGroup::world: return "world";
    }
    return "?";
}

double sum_flops(const OpList& ops, bool gemm_only) {
    double f = 0;
    for (const auto& op : ops) {
        f += gemm_only ? op.gemm_flops : op.flops;
    }
    return f;
}

namespace {

constexpr double k_act = 2.0;  // bytes per stored/communicated activation element (bf16)

// FLOPs per element of the row-wise kernels, as lowering/elementwise.cpp counts them.
double rowwise_flops_per_elem(const std::string& op) {
    if (op == "layernorm") return 8;
    if (op == "gelu") return 8;
    return 4;  // rmsnorm, softmax, silu
}

// Shapes of one rank (tp shards) for one micro-batch.
struct Dims {
    double b, s, T, Ts, h, d, a_r, kv_r, f_r, n_up, v_r, q_cols, kv_cols, qkv_n;
    std::int64_t ib, is, iT, iTs, ih, id, ia_r, ikv_r, if_r, in_up, iv_r, iqkv_n, iq_cols;
};

Dims make_dims(const ModelSpec& m, const TrainingSpec& t) {
    Dims x{};
    x.ib = t.mbs;
    x.is = t.seq;
    x.iT = t.mbs * t.seq;
    x.iTs = t.sp ? x.iT / t.tp : x.iT;
    x.ih = m.hidden;
    x.id = m.head_dim();
    x.ia_r = m.heads / t.tp;
    x.ikv_r = t.kv_heads_per_rank(m);
    x.if_r = m.ffn_hidden / t.tp;
    x.in_up = m.activation == Activation::swiglu ? 2 * x.if_r : x.if_r;
    // Vocabulary-parallel head and embedding: each rank holds ceil(V / tp) rows (V padded up to a multiple of
    // tp, the padding rows computed like the others; Megatron-LM pads to a multiple of 128 tp).
    x.iv_r = (m.vocab + t.tp - 1) / t.tp;
    x.iq_cols = x.ia_r * x.id;
    x.iqkv_n = x.iq_cols + 2 * x.ikv_r * x.id;
    x.b = static_cast<double>(x.ib);
    x.s = static_cast<double>(x.is);
    x.T = static_cast<double>(x.iT);
    x.Ts = static_cast<double>(x.iTs);
    x.h = static_cast<double>(x.ih);
    x.d = static_cast<double>(x.id);
    x.a_r = static_cast<double>(x.ia_r);
    x.kv_r = static_cast<double>(x.ikv_r);
    x.f_r = static_cast<double>(x.if_r);
    x.n_up = static_cast<double>(x.in_up);
    x.v_r = static_cast<double>(x.iv_r);
    x.q_cols = static_cast<double>(x.iq_cols);
    x.kv_cols = x.kv_r * x.d;
    x.qkv_n = static_cast<double>(x.iqkv_n);
    return x;
}

class Builder {
public:
    Builder(const ModelSpec& m, const TrainingSpec& t, OpList& out, Phase phase)
        : m_model(m), m_train(t), m_ops(out), m_phase(phase) {
        m_fwd_dtype = t.dtype == DType::bf16 ? DType::bf16 : DType::fp8_e4m3;
        m_bwd_dtype = t.dtype == DType::bf16 ? DType::bf16 : DType::fp8_e5m2;
    }

    void set_phase(Phase p) { m_phase = p; }
    Phase phase() const { return m_phase; }
    DType fwd_dtype() const { return m_fwd_dtype; }
    DType bwd_dtype() const { return m_bwd_dtype; }

    int add(Op op, std::vector<int> deps) {
        op.phase = m_phase;
        op.layer = m_layer;
        for (int d : deps) {
            if (d >= 0) op.deps.push_back(d);
        }
        m_ops.push_back(std::move(op));
        return static_cast<int>(m_ops.size()) - 1;
    }

    // GEMM (batch x) (m x k).(k x n); output bf16, or the gradient dtype for weight gradients.
    int gemm(const std::string& name, std::int64_t batch, std::int64_t m, std::int64_t k, std::int64_t n, DType dt,
             std::vector<int> deps, double param_grads = -1) {
        Op op;
        op.name = name;
        op.kernel.op = "gemm";
        op.kernel.batch = batch;
        op.kernel.m = m;
        op.kernel.k = k;
        op.kernel.n = n;
        op.kernel.dtype = dt;
        const double B = static_cast<double>(batch), M = static_cast<double>(m), K = static_cast<double>(k),
                     N = static_cast<double>(n);
        op.flops = 2 * B * M * K * N;
        op.gemm_flops = op.flops;
        const double in_b = static_cast<double>(dtype_bytes(dt));
        // A weight gradient (param_grads >= 0) is written in the gradient dtype.
        const double out_b = param_grads >= 0 ? static_cast<double>(dtype_bytes(m_train.grad_dtype)) : k_act;
        op.bytes = B * (M * K + K * N) * in_b + B * M * N * out_b;
        op.param_grads = std::max(0.0, param_grads);
        return add(op, std::move(deps));
    }

    // Row-wise kernel (norm, softmax, activation). Forward: one pass, reads x and writes y. Backward: two
    // passes of the same kernel and shape stand in (docs/workload.md); the bytes are the three tensors
    // the backward really moves (x or y, dy read; dx written).
    int rowwise(const std::string& name, const std::string& kernel, std::int64_t rows, std::int64_t cols, bool bwd,
                std::vector<int> deps, double param_grads = 0) {
        Op op;
        op.name = name;
        op.kernel.op = kernel;
        op.kernel.rows = rows;
        op.kernel.cols = cols;
        op.kernel.dtype = DType::bf16;
        op.kernel.passes = bwd ? 2 : 1;
        const double e = static_cast<double>(rows) * static_cast<double>(cols);
        op.flops = rowwise_flops_per_elem(kernel) * e * op.kernel.passes;
        op.bytes = (bwd ? 3 : 2) * e * k_act;
        op.param_grads = param_grads;
        return add(op, std::move(deps));
    }

    int stream(const std::string& name, double read, double written, double flops, std::vector<int> deps,
               double param_grads = 0) {
        Op op;
        op.name = name;
        op.kernel.op = "stream";
        op.kernel.bytes_read = read;
        op.kernel.bytes_written = written;
        op.kernel.stream_flops = flops;
        op.flops = flops;
        op.bytes = read + written;
        op.param_grads = param_grads;
        return add(op, std::move(deps));
    }

    int comm(const std::string& name, CommKind kind, CommGroup group, double bytes, DType dt, std::vector<int> deps,
             int peer = -1) {
        Op op;
        op.name = name;
        op.is_comm = true;
        op.comm.kind = kind;
        op.comm.group = group;
        op.comm.bytes = static_cast<std::uint64_t>(std::llround(bytes));
        op.comm.dtype = dt;
        op.comm.peer_stage = peer;
        op.bytes = static_cast<double>(op.comm.bytes);
        return add(op, std::move(deps));
    }

    void set_layer(int l) { m_layer = l; }

private:
    const ModelSpec& m_model;
    const TrainingSpec& m_train;
    OpList& m_ops;
    Phase m_phase;
    int m_layer = -1;
    DType m_fwd_dtype, m_bwd_dtype;
};

// Name suffix of a forward-shaped op: ".fwd", or ".recompute" when re-run before the backward.
std::string sfx(Phase p) {
    return p == Phase::recompute ? ".recompute" : ".fwd";
}

class ProgramMaker {
public:
    ProgramMaker(const ModelSpec& m, const TrainingSpec& t) : m_m(m), m_t(t), m_x(make_dims(m, t)) {
        m_norm = m.norm == Norm::rmsnorm ? "rmsnorm" : "layernorm";
        m_norm_params = m.norm == Norm::rmsnorm ? m_x.h : 2 * m_x.h;
        m_bias = m.bias ? 1.0 : 0.0;
    }

    // Forward of one layer (phase fwd or recompute) after op `in`; returns the layer's output op.
    // When `core_only`, only the unfused attention core (QK^T, softmax, dropout, AV) is emitted (selective
    // recompute) after `in`.
    int layer_forward(Builder& B, int L, int in, bool core_only = false) {
        const auto& x = m_x;
        const std::string p = fmt::format("L{}.", L);
        const std::string s = sfx(B.phase());
        const DType dt = B.fwd_dtype();
        int cur = in;
        int attn_in = in;
        if (!core_only) {
            cur = B.rowwise(p + "attn.norm" + s, m_norm, x.iTs, x.ih, false, {cur});
            if (m_t.sp) {
                cur = B.comm(p + "attn.ag" + s, CommKind::all_gather, CommGroup::tp, x.T * x.h * k_act, DType::bf16,
                             {cur});
            }
            cur = B.gemm(p + "attn.qkv" + s, 1, x.iT, x.ih, x.iqkv_n, dt, {cur});
            if (m_m.position == Position::rope) {
                // Rotate Q and K: out = x*cos + rotate_half(x)*sin, 3 FLOPs per element; reads x and the
                // cos/sin tables (s x d each), writes the rotated Q, K.
                const double e = x.T * (x.q_cols + x.kv_cols);
                cur = B.stream(p + "attn.rope" + s, e * k_act + 2 * x.s * x.d * k_act, e * k_act, 3 * e, {cur});
            }
            attn_in = cur;
        }
        if (m_t.attention == Attention::flash) {
            cur = flash(B, p + "attn.flash" + s, "flash_fwd", {attn_in});
        } else {
            cur = B.gemm(p + "attn.qk" + s, x.ib * x.ia_r, x.is, x.id, x.is, dt, {attn_in});
            const double sc = x.b * x.a_r * x.s * x.s;  // attention score elements on this rank
            cur = B.rowwise(p + "attn.softmax" + s, "softmax", x.ib * x.ia_r * x.is, x.is, false, {cur});
            if (m_m.dropout) {
                // Dropout: draw a mask (1 byte per element, kept for the backward), scale: 2 FLOPs per element.
                cur = B.stream(p + "attn.dropout" + s, sc * k_act, sc * (k_act + 1), 2 * sc, {cur});
            }
            cur = B.gemm(p + "attn.av" + s, x.ib * x.ia_r, x.is, x.is, x.id, dt, {cur});
        }
        if (core_only) return cur;
        cur = B.gemm(p + "attn.out" + s, 1, x.iT, x.iq_cols, x.ih, dt, {cur});
        cur = row_parallel_reduce(B, p + "attn", s, cur);
        cur = residual_block_tail(B, p + "attn", p + "attn.out_dropout", s, cur, in);
        const int mid = cur;
        cur = B.rowwise(p + "mlp.norm" + s, m_norm, x.iTs, x.ih, false, {cur});
        if (m_t.sp) {
            cur = B.comm(p + "mlp.ag" + s, CommKind::all_gather, CommGroup::tp, x.T * x.h * k_act, DType::bf16, {cur});
        }
        cur = B.gemm(p + "mlp.up" + s, 1, x.iT, x.ih, x.in_up, dt, {cur});
        if (m_m.activation == Activation::swiglu) {
            const int act = B.rowwise(p + "mlp.act" + s, "silu", x.iT, x.if_r, false, {cur});
            // SwiGLU product silu(gate) * up: reads two T x f_r tensors, writes one, 1 FLOP per element.
            const double e = x.T * x.f_r;
            cur = B.stream(p + "mlp.swiglu_mul" + s, 2 * e * k_act, e * k_act, e, {act, cur});
        } else {
            cur = B.rowwise(p + "mlp.act" + s, "gelu", x.iT, x.if_r, false, {cur});
        }
        cur = B.gemm(p + "mlp.down" + s, 1, x.iT, x.if_r, x.ih, dt, {cur});
        cur = row_parallel_reduce(B, p + "mlp", s, cur);
        return residual_block_tail(B, p + "mlp", p + "mlp.dropout", s, cur, mid);
    }

    // Backward of one layer from the gradient op `g`; returns the op producing the layer input's gradient.
    int layer_backward(Builder& B, int L, int g) {
        const auto& x = m_x;
        const std::string p = fmt::format("L{}.", L);
        const DType dt = B.bwd_dtype();
        B.set_layer(L);
        int attn_ready = -1;  // ops the attention backward additionally waits for (recompute)
        if (m_t.recompute == Recompute::full) {
            // Re-run the whole layer forward from its stored input before its backward (Chen et al. 2016;
            // Megatron-LM uniform full recompute, one layer per checkpoint).
            B.set_phase(Phase::recompute);
            attn_ready = layer_forward(B, L, -1);
            B.set_phase(Phase::bwd);
        }
        // MLP block.
        int cur = g;
        if (m_m.dropout) {
            const double e = x.Ts * x.h;
            cur = B.stream(p + "mlp.dropout.bwd", e * (k_act + 1), e * k_act, e, {cur, attn_ready});
        }
        const int resid_grad = cur;
        if (m_t.sp) {
            cur = B.comm(p + "mlp.ag.bwd", CommKind::all_gather, CommGroup::tp, x.T * x.h * k_act, DType::bf16,
                         {cur, attn_ready});
        }
        const int dy = cur;
        cur = B.gemm(p + "mlp.down.dgrad", 1, x.iT, x.ih, x.if_r, dt, {dy, attn_ready});
        B.gemm(p + "mlp.down.wgrad", 1, x.if_r, x.iT, x.ih, dt, {dy, attn_ready},
               x.f_r * x.h + m_bias * x.h);  // bias of a row-parallel layer: replicated, full h
        if (m_m.activation == Activation::swiglu) {
            // silu(gate) recomputed by the forward kernel (its ScalarE pass), then the products:
            // d_up = dy*silu(g), d_gate = dy*up*silu'(g); 8 FLOPs per element (2 products, the silu
            // derivative s(1 + g(1 - s)) with s = sigmoid(g) from the pass: 4, the final product 2).
            const int act = B.rowwise(p + "mlp.act.bwd", "silu", x.iT, x.if_r, false, {cur});
            const double e = x.T * x.f_r;
            cur = B.stream(p + "mlp.swiglu.bwd", 4 * e * k_act, 2 * e * k_act, 8 * e, {act, cur});
        } else {
            cur = B.rowwise(p + "mlp.act.bwd", "gelu", x.iT, x.if_r, true, {cur});
        }
        int regather = -1;
        if (m_t.sp) {
            // The norm output is stored sequence-sharded and gathered again for the weight gradient
            // (Korthikanti et al. 2022, Sec. 4.2.2).
            regather = B.comm(p + "mlp.ag.bwd_regather", CommKind::all_gather, CommGroup::tp, x.T * x.h * k_act,
                              DType::bf16, {dy});
        }
        const int up_grad = cur;
        cur = B.gemm(p + "mlp.up.dgrad", 1, x.iT, x.in_up, x.ih, dt, {up_grad});
        B.gemm(p + "mlp.up.wgrad", 1, x.ih, x.iT, x.in_up, dt, {up_grad, regather}, x.h * x.n_up + m_bias * x.n_up);
        cur = column_parallel_grad_reduce(B, p + "mlp", cur);
        cur = B.rowwise(p + "mlp.norm.bwd", m_norm, x.iTs, x.ih, true, {cur}, m_norm_params);
        // Residual: the block input's gradient is the sum of the two paths.
        cur =
            B.stream(p + "mlp.residual.bwd", 2 * x.Ts * x.h * k_act, x.Ts * x.h * k_act, x.Ts * x.h, {cur, resid_grad});
        // Attention block.
        if (m_m.dropout) {
            const double e = x.Ts * x.h;
            cur = B.stream(p + "attn.out_dropout.bwd", e * (k_act + 1), e * k_act, e, {cur});
        }
        const int resid_grad2 = cur;
        if (m_t.sp) {
            cur = B.comm(p + "attn.ag.bwd", CommKind::all_gather, CommGroup::tp, x.T * x.h * k_act, DType::bf16, {cur});
        }
        const int dout = cur;
        const bool flash_attn = m_t.attention == Attention::flash;
        if (m_t.recompute == Recompute::selective && !flash_attn) {
            // Selective recompute (Korthikanti et al. 2022, Sec. 5; Megatron-LM --recompute-granularity
            // selective): the attention core QK^T, softmax, dropout and AV re-run from the stored Q, K, V.
            // With flash attention there is nothing to re-run: its backward recomputes the scores itself.
            B.set_phase(Phase::recompute);
            attn_ready = layer_forward(B, L, -1, true);
            B.set_phase(Phase::bwd);
        }
        cur = B.gemm(p + "attn.out.dgrad", 1, x.iT, x.ih, x.iq_cols, dt, {dout, attn_ready});
        B.gemm(p + "attn.out.wgrad", 1, x.iq_cols, x.iT, x.ih, dt, {dout, attn_ready}, x.q_cols * x.h + m_bias * x.h);
        // dQ, dK, dV per query head: from the fused backward (one op produces all three), or from the
        // unfused one's GEMMs.
        std::vector<int> qkv_grads, kv_grads;
        if (flash_attn) {
            const int fb = flash(B, p + "attn.flash.bwd", "flash_bwd", {cur, attn_ready});
            qkv_grads = {fb};
            kv_grads = {fb};
        } else {
            const double sc = x.b * x.a_r * x.s * x.s;
            const int dP = B.gemm(p + "attn.av.bwd_dp", x.ib * x.ia_r, x.is, x.id, x.is, dt, {cur, attn_ready});
            const int dV = B.gemm(p + "attn.av.bwd_dv", x.ib * x.ia_r, x.is, x.is, x.id, dt, {cur, attn_ready});
            cur = dP;
            if (m_m.dropout) cur = B.stream(p + "attn.dropout.bwd", sc * (k_act + 1), sc * k_act, sc, {cur});
            cur = B.rowwise(p + "attn.softmax.bwd", "softmax", x.ib * x.ia_r * x.is, x.is, true, {cur});
            const int dQ = B.gemm(p + "attn.qk.bwd_dq", x.ib * x.ia_r, x.is, x.is, x.id, dt, {cur});
            const int dK = B.gemm(p + "attn.qk.bwd_dk", x.ib * x.ia_r, x.is, x.is, x.id, dt, {cur});
            qkv_grads = {dQ, dK, dV};
            kv_grads = {dK, dV};
        }
        if (x.ia_r > x.ikv_r) {
            // GQA: dK and dV of the query heads sharing a KV head are summed into it.
            const double per_q = x.T * x.a_r * x.d, per_kv = x.T * x.kv_r * x.d;
            qkv_grads = {qkv_grads.front(), B.stream(p + "attn.kv_group_sum.bwd", 2 * per_q * k_act, 2 * per_kv * k_act,
                                                     2 * (per_q - per_kv), kv_grads)};
        }
        if (m_m.position == Position::rope) {
            const double e = x.T * (x.q_cols + x.kv_cols);
            qkv_grads = {B.stream(p + "attn.rope.bwd", e * k_act + 2 * x.s * x.d * k_act, e * k_act, 3 * e, qkv_grads)};
        }
        if (m_t.sp) {
            regather = B.comm(p + "attn.ag.bwd_regather", CommKind::all_gather, CommGroup::tp, x.T * x.h * k_act,
                              DType::bf16, {dout});
        }
        cur = B.gemm(p + "attn.qkv.dgrad", 1, x.iT, x.iqkv_n, x.ih, dt, qkv_grads);
        std::vector<int> wdeps = qkv_grads;
        if (m_t.sp) wdeps.push_back(regather);
        B.gemm(p + "attn.qkv.wgrad", 1, x.ih, x.iT, x.iqkv_n, dt, wdeps, x.h * x.qkv_n + m_bias * x.qkv_n);
        cur = column_parallel_grad_reduce(B, p + "attn", cur);
        cur = B.rowwise(p + "attn.norm.bwd", m_norm, x.iTs, x.ih, true, {cur}, m_norm_params);
        cur = B.stream(p + "attn.residual.bwd", 2 * x.Ts * x.h * k_act, x.Ts * x.h * k_act, x.Ts * x.h,
                       {cur, resid_grad2});
        return cur;
    }

    // Fused attention core of one layer (flash_fwd or flash_bwd) over the b a/t (sequence, query head)
    // pairs of this rank: s queries x s keys x d, bf16 (the NKI flash kernels are bf16, also in fp8
    // training), causal for decoders. FLOPs count the full s x s square, as the unfused graph and the MFU
    // numerator do (a causal kernel skips the masked blocks and executes about half). Per pair:
    // forward: QK^T and AV 2 s^2 d each, softmax 4 s^2 (the unfused kernel's count), dropout 2 s^2 (the mask
    // drawn from the RNG seed, never stored); writes O and the FP32 row log-sum-exp (4 B per query row).
    // backward: QK^T recomputed, dV, dP, dQ, dK 2 s^2 d each; the softmax backward 2 x 4 s^2 (as the
    // unfused graph's two softmax passes; they stand for the recomputed exp(S - lse) and dS = P (dP - D));
    // dropout s^2 (the mask regenerated from the seed); reads Q, K, V, O, dO and the log-sum-exp, writes dQ,
    // dK, dV. K and V are read (and dK, dV written) per query head, as the kernel walks the query heads.
    int flash(Builder& B, const std::string& name, const std::string& kernel, std::vector<int> deps) {
        const auto& x = m_x;
        const bool bwd = kernel == "flash_bwd";
        Op op;
        op.name = name;
        op.kernel.op = kernel;
        op.kernel.batch = x.ib * x.ia_r;
        op.kernel.m = x.is;
        op.kernel.n = x.is;
        op.kernel.k = x.id;
        op.kernel.dtype = DType::bf16;
        op.kernel.causal = m_m.arch == Arch::decoder;
        op.kernel.dropout = m_m.dropout;
        const double pairs = x.b * x.a_r, sq = x.s * x.s;
        const double drop = m_m.dropout ? 1.0 : 0.0;
        op.gemm_flops = pairs * (bwd ? 5 : 2) * 2 * sq * x.d;
        op.flops = op.gemm_flops + pairs * sq * (bwd ? 2 * 4 + drop : 4 + 2 * drop);
        const double head = pairs * x.s * x.d * k_act, lse = pairs * x.s * 4;  // one bf16 head tensor; FP32 lse
        op.bytes = bwd ? 5 * head + lse + 3 * head : 3 * head + head + lse;
        return B.add(op, std::move(deps));
    }

    // Embedding forward (first chunk): token gather (+ learned positions), TP reduction, dropout.
    int embedding_forward(Builder& B, int in) {
        const auto& x = m_x;
        B.set_layer(-1);
        // Vocabulary-parallel gather: each rank reads the rows of its vocabulary shard (on average T/tp
        // rows) and the token ids (int32), writes T x h (zeros outside its shard).
        int cur = B.stream("embed.gather.fwd", x.T * x.h * k_act / m_t.tp + 4 * x.T, x.T * x.h * k_act, 0, {in});
        if (m_m.position == Position::learned) {
            cur = B.stream("embed.pos.fwd", 2 * x.T * x.h * k_act, x.T * x.h * k_act, x.T * x.h, {cur});
        }
        if (m_t.tp > 1) {
            cur = B.comm(m_t.sp ? "embed.rs.fwd" : "embed.ar.fwd",
                         m_t.sp ? CommKind::reduce_scatter : CommKind::all_reduce, CommGroup::tp, x.T * x.h * k_act,
                         DType::bf16, {cur});
        }
        if (m_m.dropout) {
            const double e = x.Ts * x.h;
            cur = B.stream("embed.dropout.fwd", e * k_act, e * (k_act + 1), 2 * e, {cur});
        }
        return cur;
    }

    int embedding_backward(Builder& B, int g) {
        const auto& x = m_x;
        B.set_layer(-1);
        int cur = g;
        if (m_m.dropout) {
            const double e = x.Ts * x.h;
            cur = B.stream("embed.dropout.bwd", e * (k_act + 1), e * k_act, e, {cur});
        }
        if (m_t.sp) {
            cur = B.comm("embed.ag.bwd", CommKind::all_gather, CommGroup::tp, x.T * x.h * k_act, DType::bf16, {cur});
        }
        const double gb = static_cast<double>(dtype_bytes(m_t.grad_dtype));
        double pos_params = 0;
        if (m_m.position == Position::learned) {
            // Position-table gradient: add each position's gradient rows (read dY, read-modify-write the
            // s x h rows of the table).
            pos_params = static_cast<double>(m_m.max_seq) * x.h;
            cur = B.stream("embed.pos.bwd", x.T * x.h * k_act + x.s * x.h * gb, x.s * x.h * gb, x.T * x.h, {cur},
                           pos_params);
        }
        // Scatter-add of the token gradients into this rank's vocabulary shard: reads dY and the ids,
        // read-modify-writes the touched rows (T/tp on average).
        const double rows = x.T * x.h / m_t.tp;
        return B.stream("embed.gather.bwd", x.T * x.h * k_act + 4 * x.T + rows * gb, rows * gb, rows, {cur},
                        embedding_param_grads());
    }

    // Word-embedding parameters whose gradient the first chunk's embedding backward completes. With tied
    // embeddings on one stage the head's wgrad and the gather both add into the same tensor: counted once,
    // here.
    double embedding_param_grads() const { return m_x.v_r * m_x.h; }

    // Final norm, head and loss (last chunk) forward; returns the loss op.
    int head_forward(Builder& B, int in) {
        const auto& x = m_x;
        B.set_layer(-1);
        const DType dt = B.fwd_dtype();
        int cur = B.rowwise("final_norm.fwd", m_norm, x.iTs, x.ih, false, {in});
        if (m_t.sp) {
            cur = B.comm("head.ag.fwd", CommKind::all_gather, CommGroup::tp, x.T * x.h * k_act, DType::bf16, {cur});
        }
        if (m_m.arch == Arch::encoder) {
            // BERT MLM head transform: dense h x h, GELU, LayerNorm, replicated on every TP rank (as in
            // Megatron-LM's BertLMHead).
            cur = B.gemm("head.transform.fwd", 1, x.iT, x.ih, x.ih, dt, {cur});
            cur = B.rowwise("head.act.fwd", "gelu", x.iT, x.ih, false, {cur});
            cur = B.rowwise("head.norm.fwd", m_norm, x.iT, x.ih, false, {cur});
        }
        cur = B.gemm("head.logits.fwd", 1, x.iT, x.ih, x.iv_r, dt, {cur});
        // Vocabulary-parallel cross-entropy (Megatron-LM): read the logits, keep the FP32 softmax for the
        // backward; 4 FLOPs per logit (max, subtract+exp, sum, scale). The three TP all-reduces of T FP32
        // values (row max, target logit, sum of exponentials) are one op of 3 T x 4 bytes.
        const double e = x.T * x.v_r;
        cur = B.stream("loss.fwd", e * k_act, e * 4, 4 * e, {cur});
        if (m_t.tp > 1) {
            cur = B.comm("loss.ar.fwd", CommKind::all_reduce, CommGroup::tp, 3 * x.T * 4, DType::fp32, {cur});
        }
        return cur;
    }

    int head_backward(Builder& B, int g) {
        const auto& x = m_x;
        B.set_layer(-1);
        const DType dt = B.bwd_dtype();
        const double e = x.T * x.v_r;
        int regather = -1;
        if (m_t.sp) {
            // The head input is stored sequence-sharded and gathered again for the weight gradient.
            regather =
                B.comm("head.ag.bwd_regather", CommKind::all_gather, CommGroup::tp, x.T * x.h * k_act, DType::bf16, {});
        }
        // d logits = softmax - onehot(target), scaled by 1/tokens: 2 FLOPs per logit.
        int cur = B.stream("loss.bwd", e * 4, e * k_act, 2 * e, {g});
        const int dl = cur;
        cur = B.gemm("head.logits.dgrad", 1, x.iT, x.iv_r, x.ih, dt, {dl});
        cur = column_parallel_grad_reduce(B, "head", cur);
        // Untied: the head weight's gradient completes here. Tied on one stage: it adds into the embedding
        // gradient (completed by embed.gather.bwd). Tied across stages: the last stage's copy, all-reduced
        // with the first stage's in the step (Megatron-LM's embedding group).
        const bool owns_head = !m_m.tied_embeddings;
        const double head_params = m_m.arch == Arch::encoder ? (m_m.bias ? x.v_r : 0.0) : 0.0;
        B.gemm("head.logits.wgrad", 1, x.ih, x.iT, x.iv_r, dt, {dl, regather},
               (owns_head ? x.v_r * x.h : 0.0) + head_params);
        if (m_m.arch == Arch::encoder) {
            cur = B.rowwise("head.norm.bwd", m_norm, x.iT, x.ih, true, {cur}, m_norm_params);
            cur = B.rowwise("head.act.bwd", "gelu", x.iT, x.ih, true, {cur});
            const int dy = cur;
            cur = B.gemm("head.transform.dgrad", 1, x.iT, x.ih, x.ih, dt, {dy});
            B.gemm("head.transform.wgrad", 1, x.ih, x.iT, x.ih, dt, {dy}, x.h * x.h + m_bias * x.h);
        }
        cur = B.rowwise("final_norm.bwd", m_norm, x.iTs, x.ih, true, {cur}, m_norm_params);
        return cur;
    }

    ChunkProgram chunk(int stage, int local) {
        ChunkProgram c;
        c.local_chunk = local;
        c.global_chunk = local * m_t.pp + stage;
        const int total_chunks = m_t.chunks();
        c.num_layers = static_cast<int>(m_m.layers / total_chunks);
        c.first_layer = c.global_chunk * c.num_layers;
        c.has_embedding = c.global_chunk == 0;
        c.has_head = c.global_chunk == total_chunks - 1;
        const auto& x = m_x;
        const double msg = x.T * x.h * k_act / (m_t.sp ? m_t.tp : 1);
        const int prev_stage = (stage + m_t.pp - 1) % m_t.pp, next_stage = (stage + 1) % m_t.pp;
        {
            Builder B(m_m, m_t, c.forward, Phase::fwd);
            int cur = -1;
            if (c.has_embedding) {
                cur = embedding_forward(B, -1);
            } else {
                cur = B.comm("pp.recv.fwd", CommKind::recv, CommGroup::pp, msg, DType::bf16, {}, prev_stage);
            }
            for (int l = c.first_layer; l < c.first_layer + c.num_layers; ++l) {
                B.set_layer(l);
                cur = layer_forward(B, l, cur);
            }
            B.set_layer(-1);
            if (c.has_head) {
                head_forward(B, cur);
            } else {
                B.comm("pp.send.fwd", CommKind::send, CommGroup::pp, msg, DType::bf16, {cur}, next_stage);
            }
        }
        {
            Builder B(m_m, m_t, c.backward, Phase::bwd);
            int cur = -1;
            if (c.has_head) {
                cur = head_backward(B, -1);
            } else {
                cur = B.comm("pp.recv.bwd", CommKind::recv, CommGroup::pp, msg, DType::bf16, {}, next_stage);
            }
            for (int l = c.first_layer + c.num_layers - 1; l >= c.first_layer; --l) cur = layer_backward(B, l, cur);
            B.set_layer(-1);
            if (c.has_embedding) {
                embedding_backward(B, cur);
            } else {
                B.comm("pp.send.bwd", CommKind::send, CommGroup::pp, msg, DType::bf16, {cur}, prev_stage);
            }
        }
        for (const auto& op : c.backward) c.params += op.param_grads;
        // A tied embedding split over stages: the last stage holds its own copy of the word embedding as
        // the head weight, whose gradient the head's wgrad completes.
        if (c.has_head && m_m.tied_embeddings && m_t.pp > 1) {
            c.params += x.v_r * x.h;
            for (auto& op : c.backward) {
                if (op.name == "head.logits.wgrad") op.param_grads += x.v_r * x.h;
            }
        }
        return c;
    }

    // DP gradient synchronisation in buckets, tied-embedding all-reduce, clipping, AdamW, ZeRO-1 gather.
    OpList step(const StageProgram& sp) {
        OpList ops;
        Builder B(m_m, m_t, ops, Phase::optimizer);
        const double P = sp.params;
        const double gb = static_cast<double>(dtype_bytes(m_t.grad_dtype));
        const double bucket = static_cast<double>(m_t.dp_bucket.count);
        std::vector<int> sync;
        if (m_t.dp > 1) {
            // Buckets fill in backward order: the last micro-batch's backward completes gradients from the
            // last chunk to the first, and within a chunk in op order (as PyTorch DDP / Megatron-LM fill
            // buckets in reverse parameter order).
            double filled = 0;
            int index = 0;
            const bool z = m_t.zero == 1;
            auto emit = [&](double bytes, int chunk, int after) {
                const int i = B.comm(fmt::format("dp.grad.{}.b{}", z ? "rs" : "ar", index++),
                                     z ? CommKind::reduce_scatter : CommKind::all_reduce, CommGroup::dp, bytes,
                                     m_t.grad_dtype, {});
                ops[i].after_chunk = chunk;
                ops[i].after_op = after;
                sync.push_back(i);
            };
            for (int c = static_cast<int>(sp.chunks.size()) - 1; c >= 0; --c) {
                const auto& bw = sp.chunks[c].backward;
                for (int o = 0; o < static_cast<int>(bw.size()); ++o) {
                    filled += bw[o].param_grads * gb;
                    while (filled >= bucket) {
                        emit(bucket, c, o);
                        filled -= bucket;
                    }
                }
            }
            if (filled > 0) emit(filled, 0, static_cast<int>(sp.chunks[0].backward.size()) - 1);
        }
        if (m_t.sp && m_t.tp > 1) {
            // With sequence parallelism a tensor-parallel rank's norms see only its share of the tokens, so their
            // weights' gradients are partial sums: one all-reduce over the group, of all of the stage's once its
            // backward is done (Megatron-LM's _allreduce_layernorm_grads, NxD's
            // allreduce_sequence_parallel_gradients). The norms outside the sequence-parallel region (BERT's
            // head transform) hold whole gradients already.
            double norm_params = 0;
            for (const auto& c : sp.chunks) {
                for (const auto& op : c.backward) {
                    if (!op.is_comm && op.kernel.op == m_norm && op.kernel.rows == m_x.iTs)
                        norm_params += op.param_grads;
                }
            }
            if (norm_params > 0) {
                const int i = B.comm("tp.norm_grad.ar", CommKind::all_reduce, CommGroup::tp, norm_params * gb,
                                     m_t.grad_dtype, {});
                ops[i].after_chunk = 0;
                ops[i].after_op = static_cast<int>(sp.chunks[0].backward.size()) - 1;
                sync.push_back(i);
            }
        }
        const bool tied_split = m_m.tied_embeddings && m_t.pp > 1;
        if (tied_split && (sp.stage == 0 || sp.stage == m_t.pp - 1)) {
            sync.push_back(B.comm("embed.tied_grad.ar", CommKind::all_reduce, CommGroup::embedding,
                                  m_x.v_r * m_x.h * gb, m_t.grad_dtype, {}));
        }
        // The optimizer works on the parameters this rank owns: all of its stage's (zero 0) or 1/dp of them
        // (ZeRO-1).
        const double owned = m_t.zero == 1 ? std::ceil(P / m_t.dp) : P;
        // Gradient clipping (global norm): sum of squares of the owned gradients (2 FLOPs per element), one
        // FP32 scalar all-reduced over every rank, then a scale of the gradients (1 FLOP per element).
        int cur = B.stream("opt.grad_norm", owned * gb, 0, 2 * owned, sync);
        cur = B.comm("opt.grad_norm.ar", CommKind::all_reduce, CommGroup::world, 4, DType::fp32, {cur});
        cur = B.stream("opt.grad_clip.scale", owned * gb, owned * gb, owned, {cur});
        // AdamW (Loshchilov & Hutter 2019) on FP32 master weights and moments: reads gradient, master
        // weight, m, v; writes master, m, v and the bf16 working weight. 15 FLOPs per parameter: m (3),
        // v (4), m / (sqrt(v) + eps) (3), weight decay (2), learning-rate step (2), bf16 cast (1); bias
        // corrections are per-tensor scalars.
        cur = B.stream("opt.adamw", owned * (gb + 12), owned * 14, 15 * owned, {cur});
        if (m_t.zero == 1 && m_t.dp > 1) {
            // ZeRO-1: gather the updated bf16 parameters from their owners, in buckets of the same size.
            double left = P * k_act;
            int index = 0;
            while (left > 0) {
                const double bytes = std::min(left, static_cast<double>(m_t.dp_bucket.count));
                B.comm(fmt::format("dp.param.ag.b{}", index++), CommKind::all_gather, CommGroup::dp, bytes, DType::bf16,
                       {cur});
                left -= bytes;
            }
        }
        return ops;
    }

    // Residual tail of a block after the row-parallel reduction: dropout (op `dropout`, named as its
    // backward: attn.out_dropout, mlp.dropout), residual add.
    int residual_block_tail(Builder& B, const std::string& p, const std::string& dropout, const std::string& s, int cur,
                            int resid) {
        const auto& x = m_x;
        const double e = x.Ts * x.h;
        if (m_m.dropout) cur = B.stream(dropout + s, e * k_act, e * (k_act + 1), 2 * e, {cur});
        return B.stream(p + ".residual" + s, 2 * e * k_act, e * k_act, e, {cur, resid});
    }

    // After a row-parallel GEMM: all-reduce of the partial sums (reduce-scatter with SP).
    int row_parallel_reduce(Builder& B, const std::string& p, const std::string& s, int cur) {
        if (m_t.tp == 1) return cur;
        const double bytes = m_x.T * m_x.h * k_act;
        if (m_t.sp) return B.comm(p + ".rs" + s, CommKind::reduce_scatter, CommGroup::tp, bytes, DType::bf16, {cur});
        return B.comm(p + ".ar" + s, CommKind::all_reduce, CommGroup::tp, bytes, DType::bf16, {cur});
    }

    // After the data gradient of a column-parallel GEMM: all-reduce (reduce-scatter with SP) of the input
    // gradient.
    int column_parallel_grad_reduce(Builder& B, const std::string& p, int cur) {
        if (m_t.tp == 1) return cur;
        const double bytes = m_x.T * m_x.h * k_act;
        if (m_t.sp) return B.comm(p + ".rs.bwd", CommKind::reduce_scatter, CommGroup::tp, bytes, DType::bf16, {cur});
        return B.comm(p + ".ar.bwd", CommKind::all_reduce, CommGroup::tp, bytes, DType::bf16, {cur});
    }

private:
    const ModelSpec& m_m;
    const TrainingSpec& m_t;
    Dims m_x;
    std::string m_norm;
    double m_norm_params = 0;
    double m_bias = 0;
};

}  // namespace

StageProgram build_stage_program(const ModelSpec& model, const TrainingSpec& training, int stage) {
    training.validate(model);
    if (stage < 0 || stage >= training.pp) {
        throw UserError(fmt::format("pipeline stage {}: allowed 0..{}", stage, training.pp - 1));
    }
    ProgramMaker maker(model, training);
    StageProgram sp;
    sp.stage = stage;
    for (int c = 0; c < training.virtual_stages; ++c) {
        sp.chunks.push_back(maker.chunk(stage, c));
        sp.params += sp.chunks.back().params;
    }
    sp.step = maker.step(sp);
    return sp;
}

std::vector<StageProgram> build_all_stages(const ModelSpec& model, const TrainingSpec& training) {
    std::vector<StageProgram> out;
    for (int s = 0; s < training.pp; ++s) out.push_back(build_stage_program(model, training, s));
    return out;
}

double model_flops_per_step(const ModelSpec& model, const TrainingSpec& training) {
    const ParamCount pc = parameter_count(model);
    const double tokens = static_cast<double>(training.tokens_per_step());
    const double attn = 12.0 * static_cast<double>(model.layers) * static_cast<double>(training.seq) *
                        static_cast<double>(model.heads * model.head_dim());
    return (6.0 * pc.matmul + attn) * tokens;
}

StepFlops step_flops(const std::vector<StageProgram>& stages, const ModelSpec& model, const TrainingSpec& t) {
    StepFlops f;
    f.model = model_flops_per_step(model, t);
    const double mb = static_cast<double>(t.grad_accum_steps());
    const double replicas = static_cast<double>(t.tp) * t.dp;
    for (const auto& s : stages) {
        for (const auto& c : s.chunks) {
            for (const OpList* list : {&c.forward, &c.backward}) {
                for (const auto& op : *list) {
                    const double v = op.flops * mb * replicas;
                    f.graph_total += v;
                    f.graph_gemm += op.gemm_flops * mb * replicas;
                    if (op.phase == Phase::recompute) f.graph_recompute += v;
                }
            }
        }
        f.graph_total += sum_flops(s.step) * replicas;
    }
    return f;
}

StepFlops step_flops(const ModelSpec& model, const TrainingSpec& training) {
    return step_flops(build_all_stages(model, training), model, training);
}

}  // namespace trnsim::workload
