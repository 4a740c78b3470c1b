// Fused flash attention of one head (Dao et al. 2022; the loop order of FlashAttention-2, Dao 2023), lowered
// the way the Neuron NKI kernels flash_fwd and flash_attn_bwd are built: 128-query tiles on the SBUF
// partitions, key blocks of one PSUM bank (512 FP32 columns), the tensor engine for the score and value
// products and for the transposes (LoadStationary x, MultiplyMoving identity), the scalar engine for exp, the
// vector engine for the row statistics and the running rescale, GpSimd for the causal mask (affine_select).
// Blocks entirely above the diagonal are skipped; blocks it crosses are masked. The kernel's inputs take the
// layouts the tensor engine wants (the contraction dimension on partitions), as NKI's kernels take them.
//
// flash_fwd: inputs qT [d, sq], kT [d, sk], v [sk, d]; outputs o [sq, d] and lse [sq, 1] (FP32 row
//   log-sum-exp of the scaled scores, for the backward). K and V stay resident in SBUF for the whole head.
//   Per (query tile i, key block j), software-pipelined over the blocks of every tile in order, one engine's
//   step of the score chain per stage, so that no engine waits within a step for another's work of that step:
//     0  TensorE  S = Q_i K_j^T                        (LoadStationary Q_i^T, MultiplyMoving K_j^T)
//        GpSimd   S masked (blocks the diagonal crosses)
//     1  VectorE  row max; m = max(m_prev, max); -scale m
//     2  ScalarE  P = exp(scale S - scale m), row sums; alpha = exp(scale (m_prev - m))
//     3  TensorE  P^T per 128 keys (transpose)
//     4  VectorE or ScalarE  copy P^T from PSUM (with attention dropout: VectorE, the copy is nki.isa.dropout)
//     5  TensorE  O_j = P V_j (accumulated over the 128-key sub-blocks in PSUM)
//        GpSimd, VectorE  O = alpha O + O_j; l = alpha l + rowsum   (the first block: O = O_j, l = rowsum)
//        last block of the tile: O / l stored; lse = scale m + ln l stored
//   On NeuronCore-v4 (a Vector-engine `exponential`) a second variant scales Q^T once per tile on ScalarE and
//   runs stage 2 on VectorE (P = exp(S - m), alpha = exp(m_prev - m)) with every stage-4 copy on ScalarE (with
//   dropout, on VectorE as in the other); the lowering keeps the variant whose busiest Vector/Scalar/GpSimd
//   engine has the least work.
//
// flash_bwd: inputs qT, q, kT, k, vT, o, doT, do [.., d] and lse; outputs dq [sq, d], dk, dv [sk, d]. The
//   query side (Q, Q^T, dO, dO^T, D = rowsum(dO o O), -lse, and the FP32 dQ accumulators) stays resident;
//   the outer loop walks key blocks (K^T, V^T, K loaded per block, double-buffered), the inner loop the
//   query tiles that see the block. Per (key block j, query tile i):
//     0  TensorE  S = Q_i K_j^T; dP = dO_i V_j^T        GpSimd  S masked (diagonal blocks)
//     1  ScalarE  P = exp(scale S - lse) ; T = scale (dP - D)      GpSimd  dS = P o T
//     2  TensorE  per 128 keys: dV_j += P^T dO_i; LoadStationary dS, dK_j += dS^T Q_i and dS^T (transpose)
//        VectorE  copy dS^T from PSUM
//     3  TensorE  dQ_i' = dS K_j;  VectorE  dQ_i += dQ_i'
//   After a key block's last tile: dK_j, dV_j copied from PSUM (VectorE, ScalarE) and stored; at the end the
//   dQ accumulators are rounded to BF16 and stored. With attention dropout (the mask regenerated from the
//   forward's seed), a stage more after 0: VectorE dP o mask from PSUM beside the exp; then T from it, dS,
//   and VectorE P o mask, which dV takes; stages 2 and 3 follow as 3 and 4.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "emit.h"
#include "trnsim/core/error.h"
#include "trnsim/lowering/kernel.h"
#include "trnsim/lowering/program_builder.h"

namespace trnsim::lowering {

using hw::ActFunc;
using hw::AluOp;
using hw::EngineKind;
using hw::Instruction;
using hw::Op;
using hw::TileRef;

namespace {

// A score that exp() turns into 0 in FP32 once the row maximum is subtracted (NKI's kernels use -9984).
constexpr float k_masked = -9984.0f;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
    return (a + b - 1) / b;
}

// A buffer per pipeline slot: a value written at stage `first` and last read at stage `last` needs
// last - first + 2 slots (as elementwise.cpp explains).
struct Slots {
    std::vector<int> ids;
    int at(std::int64_t n) const { return ids[static_cast<std::size_t>(n % static_cast<std::int64_t>(ids.size()))]; }
};

// One (query tile, key block) pair the kernel computes, in emission order.
struct Block {
    std::int64_t q_tile = 0, kv_block = 0;
    bool first = false, last = false;  // of the query tile (forward) or of the key block (backward)
    bool masked = false;               // the causal diagonal crosses it
};

struct Geometry {
    std::int64_t sq, sk, d, qt, kb, q_tiles, kv_blocks;
    bool causal;
    std::int64_t q_offset;

    std::int64_t q0(std::int64_t i) const { return i * qt; }
    int q_rows(std::int64_t i) const { return static_cast<int>(std::min(qt, sq - q0(i))); }
    std::int64_t k0(std::int64_t j) const { return j * kb; }
    int k_cols(std::int64_t j) const { return static_cast<int>(std::min(kb, sk - k0(j))); }
    // Keys of block j some query of tile i attends to / all of them.
    bool visible(std::int64_t i, std::int64_t j) const { return !causal || k0(j) <= q_offset + q0(i) + q_rows(i) - 1; }
    bool crosses(std::int64_t i, std::int64_t j) const { return causal && k0(j) + k_cols(j) - 1 > q_offset + q0(i); }
    // The affine_select constant: keep (r, c) where q_offset + q0 + r >= k0 + c.
    std::int64_t mask_offset(std::int64_t i, std::int64_t j) const { return q_offset + q0(i) - k0(j); }
    // Scores the mask keeps: query i sees min(sk, q_offset + i + 1) keys when causal.
    double scores() const {
        if (!causal) return double(sq) * double(sk);
        double n = 0;
        for (std::int64_t i = 0; i < sq; ++i) n += double(std::min(sk, q_offset + i + 1));
        return n;
    }
    // Executed work: multiply-accumulates of the blocks computed (rows x columns x d per product).
    double block_elems(std::int64_t i, std::int64_t j) const { return double(q_rows(i)) * double(k_cols(j)); }
};

Geometry geometry(const KernelRequest& r, const hw::ChipSpec& chip) {
    const auto& core = chip.core;
    Geometry g{};
    g.sq = r.m;
    g.sk = r.n;
    g.d = r.k;
    g.qt = core.sbuf_partitions;
    // A key block fills one PSUM bank in FP32, and is at most one MultiplyMoving wide.
    g.kb = std::min<std::int64_t>(core.tensor.moving_max, static_cast<std::int64_t>(core.psum_bank_size().count / 4));
    g.kb = g.kb / g.qt * g.qt;
    g.q_tiles = ceil_div(g.sq, g.qt);
    g.kv_blocks = ceil_div(g.sk, g.kb);
    g.causal = r.causal;
    g.q_offset = r.q_offset;
    if (core.tensor.dataflow == hw::Dataflow::os) {
        throw UserError(
            fmt::format("{}: the kernel is written for a weight-stationary array; "
                        "chip.core.tensor_engine.dataflow is os (allowed: ws, is), or use unfused attention",
                        r.op));
    }
    if (g.d > core.tensor.rows || g.d > core.tensor.cols) {
        throw UserError(
            fmt::format("{}: head dimension {} exceeds the {}x{} tensor engine (allowed: up to {}); use "
                        "unfused attention",
                        r.op, g.d, core.tensor.rows, core.tensor.cols, std::min(core.tensor.rows, core.tensor.cols)));
    }
    if (g.kb < g.qt || core.tensor.rows < g.qt || core.tensor.cols < g.qt) {
        throw UserError(
            fmt::format("{}: needs a {}-row tensor engine and PSUM banks of {} FP32 columns", r.op, g.qt, g.qt));
    }
    if (r.dtype != DType::bf16) {
        throw UserError(fmt::format("{}: --dtype {}: allowed bf16 (the flash kernels take BF16 Q, K, V)", r.op,
                                    dtype_name(r.dtype)));
    }
    if (r.q_offset < 0 || (r.causal && r.q_offset + r.m > r.n)) {
        throw UserError(fmt::format("{}: query offset {} with {} queries and {} keys: allowed 0 .. keys - queries",
                                    r.op, r.q_offset, r.m, r.n));
    }
    return g;
}

void check_sbuf(const ProgramBuilder& b, const KernelRequest& r, const hw::ChipSpec& chip, const char* resident) {
    if (b.sbuf_bytes_per_partition() > chip.core.sbuf_partition_size.count) {
        throw UserError(
            fmt::format("{} with {} queries, {} keys, head dimension {}: {} need {} per SBUF partition, "
                        "chip.core.sbuf.partition_size is {}; allowed: shorter sequences",
                        r.op, r.m, r.n, r.k, resident, to_string(Bytes{b.sbuf_bytes_per_partition()}),
                        to_string(chip.core.sbuf_partition_size)));
    }
}

// Runs `emit(stage, block)` as a software pipeline: at step t, stage s works on block t - s, later stages
// first, so that every instruction depends only on instructions emitted before it.
template <class F>
void pipeline(const std::vector<Block>& blocks, int stages, F&& emit) {
    const auto n = static_cast<std::int64_t>(blocks.size());
    for (std::int64_t t = 0; t < n + stages - 1; ++t) {
        for (int s = 0; s < stages; ++s) {
            if (t - s >= 0 && t - s < n) emit(s, t - s);
        }
    }
}

// `n` SBUF or PSUM buffers of one shape, for a pipeline's slots.
Slots sbuf_slots(ProgramBuilder& b, const char* name, DType dt, int rows, int cols, int n) {
    Slots s;
    for (int i = 0; i < n; ++i) s.ids.push_back(b.sbuf(fmt::format("{}{}", name, i), dt, rows, cols));
    return s;
}
Slots psum_slots(ProgramBuilder& b, const char* name, int rows, int cols, int n) {
    Slots s;
    for (int i = 0; i < n; ++i) s.ids.push_back(b.psum(fmt::format("{}{}", name, i), rows, cols));
    return s;
}

// The shape, the plan (blocks computed and masked, executed matrix-product FLOPs, SBUF) and the program.
void finish(LoweredKernel& out, ProgramBuilder& b, const KernelRequest& r, const Geometry& g,
            const std::vector<Block>& blocks, double macs) {
    out.shape = {{"m", r.m}, {"k", r.k}, {"n", r.n}, {"causal", r.causal ? 1 : 0}, {"q_offset", r.q_offset}};
    if (r.dropout) out.shape.emplace_back("dropout", 1);
    out.plan = {{"query_tile", g.qt},
                {"key_block", g.kb},
                {"blocks", static_cast<std::int64_t>(blocks.size())},
                {"blocks_masked", static_cast<std::int64_t>(std::count_if(blocks.begin(), blocks.end(),
                                                                          [](const Block& x) { return x.masked; }))},
                {"executed_matmul_flops", static_cast<std::int64_t>(2 * macs)},
                {"sbuf_bytes_per_partition", static_cast<std::int64_t>(b.sbuf_bytes_per_partition())}};
    out.program = b.take();
    out.plan["expected_read_bytes"] = static_cast<std::int64_t>(out.program.dma_read_bytes());
    out.plan["expected_write_bytes"] = static_cast<std::int64_t>(out.program.dma_write_bytes());
}

// The causal mask of a block the diagonal crosses: GpSimd copies the scores from PSUM into an FP32 SBUF tile,
// the hidden ones replaced by k_masked.
void mask(ProgramBuilder& b, const Geometry& g, const Block& bl, std::int64_t n, const Slots& s_ps,
          const Slots& s_masked) {
    const int pr = g.q_rows(bl.q_tile), kc = g.k_cols(bl.kv_block);
    Instruction sel = make(Op::affine_select, b.tile(s_masked.at(n), 0, pr, 0, kc), b.tile(s_ps.at(n), 0, pr, 0, kc));
    sel.offset = g.mask_offset(bl.q_tile, bl.kv_block);
    sel.scalar0 = constant(k_masked);
    b.emit(EngineKind::gpsimd, sel);
}

// The issue-port time of the busiest of the Vector, Scalar and GpSimd engines over a whole program, seconds.
double busiest_engine_s(const hw::Program& program, const hw::NeuronCoreSpec& core) {
    double busiest = 0;
    for (const hw::ComputeEngineSpec* spec : {&core.vector, &core.scalar, &core.gpsimd}) {
        const hw::ComputeEngine engine(*spec);
        std::int64_t cycles = 0;
        for (const Instruction& ins : program.stream(spec->kind)) cycles += engine.busy_cycles(program, ins);
        busiest = std::max(busiest, static_cast<double>(cycles) / spec->clock.hz);
    }
    return busiest;
}

// `vector_exp`: the NC-v4 variant, exp on the Vector engine (`exponential`, exp(S - m), so Q is scaled once per
// query tile on the Scalar engine) and every P^T copy on the Scalar engine.
LoweredKernel lower_forward(const KernelRequest& r, const hw::ChipSpec& chip, bool vector_exp) {
    const Geometry g = geometry(r, chip);
    const auto& core = chip.core;
    const float scale = 1.0f / std::sqrt(static_cast<float>(g.d));
    const int d = static_cast<int>(g.d), P = static_cast<int>(g.qt), KB = static_cast<int>(g.kb);
    const std::int64_t sub = g.qt;  // keys per transpose / value tile
    const std::int64_t v_tiles = ceil_div(g.sk, sub);
    ProgramBuilder b(core);
    LoweredKernel out;
    const int qT_t = b.dram("qT", DType::bf16, g.d, g.sq, false);
    const int kT_t = b.dram("kT", DType::bf16, g.d, g.sk, false);
    const int v_t = b.dram("v", DType::bf16, g.sk, g.d, false);
    const int o_t = b.dram("o", DType::bf16, g.sq, g.d, true);
    const int lse_t = b.dram("lse", DType::fp32, g.sq, 1, true);
    out.inputs = {qT_t, kT_t, v_t};
    out.output = o_t;
    out.outputs = {o_t, lse_t};

    // Resident K^T (one buffer per key block) and V (one per 128 keys): an instruction waits only for the
    // blocks it reads.
    std::vector<int> kT(static_cast<std::size_t>(g.kv_blocks)), v(static_cast<std::size_t>(v_tiles));
    for (std::int64_t j = 0; j < g.kv_blocks; ++j) kT[j] = b.sbuf(fmt::format("kT{}", j), DType::bf16, d, g.k_cols(j));
    for (std::int64_t t = 0; t < v_tiles; ++t)
        v[t] = b.sbuf(fmt::format("v{}", t), DType::bf16, static_cast<int>(std::min(sub, g.sk - t * sub)), d);
    const int ident = b.sbuf("identity", DType::bf16, P, P);
    const Slots qT = sbuf_slots(b, "qT", DType::bf16, d, P, 2);
    const Slots qTs = vector_exp ? sbuf_slots(b, "qT_scaled", DType::bf16, d, P, 2) : Slots{};
    const Slots s_ps = psum_slots(b, "s", P, KB, 3);  // stage 0 -> 1, 2
    const Slots s_masked = sbuf_slots(b, "s_masked", DType::fp32, P, KB, 3);
    const Slots p = sbuf_slots(b, "p", DType::bf16, P, KB, 3);             // 2 -> 3
    const Slots pT_ps = psum_slots(b, "pT_psum", P, KB, 2);                // 3 -> 4
    const Slots pT = sbuf_slots(b, "pT", DType::bf16, P, KB, 3);           // 4 -> 5
    const Slots o_ps = psum_slots(b, "o_psum", P, d, 2);                   // 5
    const Slots mx = sbuf_slots(b, "row_max", DType::fp32, P, 1, 2);       // 1
    const Slots m = sbuf_slots(b, "m", DType::fp32, P, 1, 6);              // 1 -> next 1, 2; 5
    const Slots nm = sbuf_slots(b, "neg_scaled_m", DType::fp32, P, 1, 2);  // 1 -> 2
    const Slots ls = sbuf_slots(b, "row_sum", DType::fp32, P, 1, 5);       // 2 -> 5
    const Slots alpha = sbuf_slots(b, "alpha", DType::fp32, P, 1, 5);      // 2 -> 5
    // Per query tile, from stage 2 of its first block to stage 5 of its last: the tile four later may start
    // (one block each) in the step that finishes this one. The SBUF buffers have one slot more than their
    // lifetimes need, so that a write may start while the oldest slot is still read (as elementwise.cpp);
    // PSUM, 7 of 8 banks, has the least.
    const Slots o_acc = sbuf_slots(b, "o_acc", DType::fp32, P, d, 5);
    const Slots l = sbuf_slots(b, "l", DType::fp32, P, 1, 5);
    const Slots o_out = sbuf_slots(b, "o_out", DType::bf16, P, d, 2);
    const Slots ln_l = sbuf_slots(b, "ln_l", DType::fp32, P, 1, 2);
    const Slots lse = sbuf_slots(b, "lse", DType::fp32, P, 1, 2);
    check_sbuf(b, r, chip, "K and V of the head, resident,");
    b.emit(EngineKind::gpsimd, make(Op::identity, b.whole(ident)));

    std::vector<Block> blocks;
    double macs = 0;
    for (std::int64_t i = 0; i < g.q_tiles; ++i) {
        std::int64_t last = 0;
        for (std::int64_t j = 0; j < g.kv_blocks; ++j)
            if (g.visible(i, j)) last = j;
        for (std::int64_t j = 0; j <= last; ++j) {
            blocks.push_back({i, j, j == 0, j == last, g.crosses(i, j)});
            macs += 2 * g.block_elems(i, j) * static_cast<double>(g.d);
        }
    }
    std::vector<char> k_loaded(static_cast<std::size_t>(g.kv_blocks), 0);
    constexpr int q_k = 0, q_v = 1, q_q = 2, q_store = 3;
    auto load_q = [&](std::int64_t i) {
        Instruction lq = make(Op::dma_load, b.tile(qT.at(i), 0, d, 0, g.q_rows(i)));
        lq.dram = {qT_t, 0, g.d, g.q0(i), g.q_rows(i)};
        b.emit_dma(q_q, lq);
    };
    // vector_exp: scale Q^T of tile i (loaded a tile earlier) on the Scalar engine.
    auto scale_q = [&](std::int64_t i) {
        Instruction sq =
            make(Op::activation, b.tile(qTs.at(i), 0, d, 0, g.q_rows(i)), b.tile(qT.at(i), 0, d, 0, g.q_rows(i)));
        sq.scalar0 = constant(scale);
        b.emit(EngineKind::scalar, sq);
    };
    const Slots& q_in = vector_exp ? qTs : qT;

    pipeline(blocks, 6, [&](int stage, std::int64_t n) {
        const Block& bl = blocks[static_cast<std::size_t>(n)];
        const std::int64_t i = bl.q_tile, j = bl.kv_block;
        const int pr = g.q_rows(i), kc = g.k_cols(j);
        const int subs = static_cast<int>(ceil_div(kc, sub));
        auto sub_cols = [&](int u) { return static_cast<int>(std::min<std::int64_t>(sub, kc - u * sub)); };
        const auto scores = [&] { return b.tile(bl.masked ? s_masked.at(n) : s_ps.at(n), 0, pr, 0, kc); };
        const auto col = [&](const Slots& s, std::int64_t k) { return b.tile(s.at(k), 0, pr, 0, 1); };
        if (stage == 0) {
            // Loads run one key block and one query tile ahead of their first use.
            for (std::int64_t jj = j; jj <= std::min(j + 1, g.kv_blocks - 1); ++jj) {
                if (k_loaded[jj]) continue;
                k_loaded[jj] = 1;
                const int kcc = g.k_cols(jj);
                Instruction ld = make(Op::dma_load, b.whole(kT[jj]));
                ld.dram = {kT_t, 0, g.d, g.k0(jj), kcc};
                b.emit_dma(q_k, ld);
                for (std::int64_t k0 = g.k0(jj); k0 < g.k0(jj) + kcc; k0 += sub) {
                    const std::int64_t t = k0 / sub;
                    Instruction lv = make(Op::dma_load, b.whole(v[t]));
                    lv.dram = {v_t, k0, std::min(sub, g.sk - k0), 0, g.d};
                    b.emit_dma(q_v, lv);
                }
            }
            if (n == 0) load_q(0);
            if (bl.first && i + 1 < g.q_tiles) load_q(i + 1);
            // The next tile's scaling waits for its load, issued at this tile's first block: at the last.
            if (vector_exp && n == 0) scale_q(0);
            if (vector_exp && bl.last && i + 1 < g.q_tiles) scale_q(i + 1);
            b.emit(EngineKind::tensor, make(Op::load_stationary, {}, b.tile(q_in.at(i), 0, d, 0, pr)));
            b.emit(EngineKind::tensor,
                   make(Op::multiply_moving, b.tile(s_ps.at(n), 0, pr, 0, kc), b.tile(kT[j], 0, d, 0, kc)));
            if (bl.masked) mask(b, g, bl, n, s_ps, s_masked);
        } else if (stage == 1) {
            // The row maximum of the raw scores, the running maximum, and -scale m as the exp bias.
            Instruction mxi = make(Op::tensor_reduce, bl.first ? col(m, n) : col(mx, n), scores());
            mxi.alu0 = AluOp::max;
            b.emit(EngineKind::vector, mxi);
            if (!bl.first) {
                Instruction mm = make(Op::tensor_scalar, col(m, n), col(mx, n));
                mm.alu0 = AluOp::max;
                mm.scalar0 = per_row(col(m, n - 1));
                b.emit(EngineKind::vector, mm);
            }
            if (!vector_exp) {
                Instruction neg = make(Op::tensor_scalar, col(nm, n), col(m, n));
                neg.alu0 = AluOp::multiply;
                neg.scalar0 = constant(-scale);
                b.emit(EngineKind::vector, neg);
            }
        } else if (stage == 2 && vector_exp) {
            // The scores are scaled already: P = exp(S - m), alpha = exp(m_prev - m).
            Instruction ex = make(Op::exponential, b.tile(p.at(n), 0, pr, 0, kc), scores());
            ex.scalar0 = per_row(col(m, n));
            ex.accumulate = true;
            ex.acc = bl.first ? col(l, i) : col(ls, n);
            b.emit(EngineKind::vector, ex);
            if (!bl.first) {
                Instruction al = make(Op::exponential, col(alpha, n), col(m, n - 1));
                al.scalar0 = per_row(col(m, n));
                b.emit(EngineKind::vector, al);
            }
        } else if (stage == 2) {
            Instruction ex = make(Op::activation, b.tile(p.at(n), 0, pr, 0, kc), scores());
            ex.func = ActFunc::exp;
            ex.scalar0 = constant(scale);
            ex.scalar1 = per_row(col(nm, n));
            ex.accumulate = true;
            ex.acc = bl.first ? col(l, i) : col(ls, n);
            b.emit(EngineKind::scalar, ex);
            if (!bl.first) {
                Instruction al = make(Op::activation, col(alpha, n), col(m, n - 1));  // exp(scale (m_prev - m))
                al.func = ActFunc::exp;
                al.scalar0 = constant(scale);
                al.scalar1 = per_row(col(nm, n));
                b.emit(EngineKind::scalar, al);
            }
        } else if (stage == 3) {
            for (int u = 0; u < subs; ++u) {
                const int w = sub_cols(u);
                b.emit(EngineKind::tensor,
                       make(Op::load_stationary, {}, b.tile(p.at(n), 0, pr, u * static_cast<int>(sub), w)));
                b.emit(EngineKind::tensor,
                       make(Op::multiply_moving, b.tile(pT_ps.at(n), 0, w, u * P, pr), b.tile(ident, 0, pr, 0, pr)));
            }
        } else if (stage == 4) {
            // One copy of the transposed block, alternately on the vector and scalar engines (as gemm.cpp
            // evacuates PSUM). With attention dropout, every copy is the Vector engine's dropout instruction
            // (it reads PSUM): the mask applied to P^T on its way to SBUF, one instruction per block over the
            // block's probabilities (NKI's flash_fwd applies it to the softmax tile before the transpose; the
            // row sums l are taken before it, as the softmax's).
            const int width = subs * P;
            const TileRef src = b.tile(pT_ps.at(n), 0, static_cast<int>(std::min<std::int64_t>(sub, kc)), 0, width);
            const TileRef dst = b.tile(pT.at(n), 0, src.rows, 0, width);
            if (r.dropout) {
                Instruction dr = make(Op::dropout, dst, src);
                dr.scalar0 = constant(k_attention_dropout);
                b.emit(EngineKind::vector, dr);
            } else {
                const bool on_scalar = vector_exp || n % 2 == 1;
                b.emit(on_scalar ? EngineKind::scalar : EngineKind::vector,
                       make(on_scalar ? Op::activation : Op::tensor_copy, dst, src));
            }
        } else {
            for (int u = 0; u < subs; ++u) {
                const int w = sub_cols(u);
                const std::int64_t t = (g.k0(j) + u * sub) / sub;
                b.emit(EngineKind::tensor, make(Op::load_stationary, {}, b.tile(pT.at(n), 0, w, u * P, pr)));
                Instruction mm = make(Op::multiply_moving, b.tile(o_ps.at(n), 0, pr, 0, d), b.tile(v[t], 0, w, 0, d));
                mm.accumulate = u > 0;
                b.emit(EngineKind::tensor, mm);
            }
            const TileRef acc = b.tile(o_acc.at(i), 0, pr, 0, d);
            if (bl.first) {
                b.emit(EngineKind::vector, make(Op::tensor_copy, acc, b.tile(o_ps.at(n), 0, pr, 0, d)));
            } else {
                Instruction rescale = make(Op::tensor_scalar, acc, acc);
                rescale.alu0 = AluOp::multiply;
                rescale.scalar0 = per_row(col(alpha, n));
                b.emit(EngineKind::gpsimd, rescale);
                Instruction add = make(Op::tensor_tensor, acc, acc, b.tile(o_ps.at(n), 0, pr, 0, d));
                add.alu0 = AluOp::add;
                b.emit(EngineKind::vector, add);
                Instruction lu = make(Op::tensor_scalar, col(l, i), col(l, i));
                lu.alu0 = AluOp::multiply;
                lu.scalar0 = per_row(col(alpha, n));
                lu.alu1 = AluOp::add;
                lu.scalar1 = per_row(col(ls, n));
                b.emit(EngineKind::vector, lu);
            }
            if (bl.last) {
                Instruction fin = make(Op::tensor_scalar, b.tile(o_out.at(i), 0, pr, 0, d), acc);
                fin.alu0 = AluOp::divide;
                fin.scalar0 = per_row(col(l, i));
                b.emit(EngineKind::vector, fin);
                Instruction st = make(Op::dma_store, {}, b.tile(o_out.at(i), 0, pr, 0, d));
                st.dram = {o_t, g.q0(i), pr, 0, g.d};
                b.emit_dma(q_store, st);
                Instruction lg = make(Op::activation, col(ln_l, i), col(l, i));
                lg.func = ActFunc::ln;
                b.emit(EngineKind::scalar, lg);
                Instruction ls_i = make(Op::tensor_scalar, col(lse, i), col(m, n));  // scale m + ln l
                ls_i.alu0 = AluOp::multiply;
                ls_i.scalar0 = constant(vector_exp ? 1.0f : scale);  // vector_exp: m is of the scaled scores
                ls_i.alu1 = AluOp::add;
                ls_i.scalar1 = per_row(col(ln_l, i));
                b.emit(EngineKind::vector, ls_i);
                Instruction sl = make(Op::dma_store, {}, col(lse, i));
                sl.dram = {lse_t, g.q0(i), pr, 0, 1};
                b.emit_dma(q_store, sl);
            }
        }
    });

    // FLOPs of the operator over the scores the mask keeps: QK^T and PV 2 d each, softmax 4.
    out.flops = g.scores() * (4 * static_cast<double>(g.d) + 4);
    finish(out, b, r, g, blocks, macs);
    return out;
}

LoweredKernel lower_backward(const KernelRequest& r, const hw::ChipSpec& chip) {
    const Geometry g = geometry(r, chip);
    const auto& core = chip.core;
    const float scale = 1.0f / std::sqrt(static_cast<float>(g.d));
    const int d = static_cast<int>(g.d), P = static_cast<int>(g.qt), KB = static_cast<int>(g.kb);
    const std::int64_t sub = g.qt;
    const int max_subs = static_cast<int>(g.kb / sub);
    ProgramBuilder b(core);
    LoweredKernel out;
    const int qT_t = b.dram("qT", DType::bf16, g.d, g.sq, false);
    const int q_t = b.dram("q", DType::bf16, g.sq, g.d, false);
    const int kT_t = b.dram("kT", DType::bf16, g.d, g.sk, false);
    const int k_t = b.dram("k", DType::bf16, g.sk, g.d, false);
    const int vT_t = b.dram("vT", DType::bf16, g.d, g.sk, false);
    const int o_t = b.dram("o", DType::bf16, g.sq, g.d, false);
    const int doT_t = b.dram("doT", DType::bf16, g.d, g.sq, false);
    const int do_t = b.dram("do", DType::bf16, g.sq, g.d, false);
    const int lse_t = b.dram("lse", DType::fp32, g.sq, 1, false);
    const int dq_t = b.dram("dq", DType::bf16, g.sq, g.d, true);
    const int dk_t = b.dram("dk", DType::bf16, g.sk, g.d, true);
    const int dv_t = b.dram("dv", DType::bf16, g.sk, g.d, true);
    out.inputs = {qT_t, q_t, kT_t, k_t, vT_t, o_t, doT_t, do_t, lse_t};
    out.output = dq_t;
    out.outputs = {dq_t, dk_t, dv_t};

    // The query side, resident: one buffer per tile and tensor.
    struct QTile {
        int qT, q, doT, dout, dq, nlse, nD;
    };
    std::vector<QTile> qs(static_cast<std::size_t>(g.q_tiles));
    for (std::int64_t i = 0; i < g.q_tiles; ++i) {
        const int pr = g.q_rows(i);
        qs[i] = {b.sbuf(fmt::format("qT{}", i), DType::bf16, d, pr),
                 b.sbuf(fmt::format("q{}", i), DType::bf16, pr, d),
                 b.sbuf(fmt::format("doT{}", i), DType::bf16, d, pr),
                 b.sbuf(fmt::format("do{}", i), DType::bf16, pr, d),
                 b.sbuf(fmt::format("dq_acc{}", i), DType::fp32, pr, d),
                 b.sbuf(fmt::format("neg_lse{}", i), DType::fp32, pr, 1),
                 b.sbuf(fmt::format("neg_scaled_D{}", i), DType::fp32, pr, 1)};
    }
    const int ident = b.sbuf("identity", DType::bf16, P, P);
    // The key side of a block, loaded while the previous block computes (K is read until stage 3 (4 with
    // dropout) of the
    // block's last tile, when the next but one block is loading).
    const Slots kT = sbuf_slots(b, "kT", DType::bf16, d, KB, 3);
    const Slots vT = sbuf_slots(b, "vT", DType::bf16, d, KB, 3);
    const Slots kk = sbuf_slots(b, "k", DType::bf16, P, max_subs * d, 3 + (r.dropout ? 1 : 0));
    const Slots o_in = sbuf_slots(b, "o", DType::bf16, P, d, 2);
    const Slots prod = sbuf_slots(b, "do_o", DType::fp32, P, d, 2);
    const Slots D = sbuf_slots(b, "D", DType::fp32, P, 1, 2);
    const Slots s_ps = psum_slots(b, "s", P, KB, 2);    // stage 0 -> 1
    const Slots dp_ps = psum_slots(b, "dp", P, KB, 2);  // 0 -> 1
    const Slots s_masked = sbuf_slots(b, "s_masked", DType::fp32, P, KB, 3);
    // With dropout, one stage more (e = 1): stage 1 masks dP, stage 2 takes T, dS and the masked P (the
    // mask regenerated from the forward's seed); the stages after it move one on.
    const int extra = r.dropout ? 1 : 0;
    const Slots p = sbuf_slots(b, "p", DType::bf16, P, KB, 3 + extra);                           // 1 -> 2 + e
    const Slots t = sbuf_slots(b, "t", DType::bf16, P, KB, 2);                                   // 1 + e
    const Slots pz = r.dropout ? sbuf_slots(b, "p_dropped", DType::bf16, P, KB, 3) : Slots{};    // 2 -> 3
    const Slots dpz = r.dropout ? sbuf_slots(b, "dp_dropped", DType::fp32, P, KB, 3) : Slots{};  // 1 -> 2
    const Slots ds = sbuf_slots(b, "ds", DType::bf16, P, KB, 3);                                 // 1 + e -> 2 + e
    const Slots dsT_ps = psum_slots(b, "dsT_psum", P, KB, 1);                                    // 2 + e
    const Slots dsT = sbuf_slots(b, "dsT", DType::bf16, P, KB, 3);                               // 2 + e -> 3 + e
    const Slots dq_ps = psum_slots(b, "dq_psum", P, d, 1);                                       // 3 + e
    const Slots dv_ps = psum_slots(b, "dv_psum", P, max_subs * d, 1);                            // a key block's tiles
    const Slots dk_ps = psum_slots(b, "dk_psum", P, max_subs * d, 1);
    const Slots dv_out = sbuf_slots(b, "dv_out", DType::bf16, P, max_subs * d, 2);
    const Slots dk_out = sbuf_slots(b, "dk_out", DType::bf16, P, max_subs * d, 2);
    const Slots dq_out = sbuf_slots(b, "dq_out", DType::bf16, P, d, 2);
    check_sbuf(b, r, chip, "the query side of the head (Q, Q^T, dO, dO^T, FP32 dQ), resident,");
    b.emit(EngineKind::gpsimd, make(Op::identity, b.whole(ident)));

    std::vector<Block> blocks;
    double macs = 0;
    for (std::int64_t j = 0; j < g.kv_blocks; ++j) {
        std::vector<std::int64_t> tiles;
        for (std::int64_t i = 0; i < g.q_tiles; ++i)
            if (g.visible(i, j)) tiles.push_back(i);
        for (std::size_t x = 0; x < tiles.size(); ++x) {
            blocks.push_back({tiles[x], j, x == 0, x + 1 == tiles.size(), g.crosses(tiles[x], j)});
            macs += 5 * g.block_elems(tiles[x], j) * static_cast<double>(g.d);
        }
    }
    constexpr int q_key = 0, q_query = 1, q_kv_store = 2, q_dq_store = 3;
    std::vector<char> q_loaded(static_cast<std::size_t>(g.q_tiles), 0);
    std::int64_t k_loaded = -1;
    auto load = [&](int queue, int buffer, int rows, int cols, int tensor, std::int64_t r0, std::int64_t c0) {
        Instruction ld = make(Op::dma_load, b.tile(buffer, 0, rows, 0, cols));
        ld.dram = {tensor, r0, rows, c0, cols};
        b.emit_dma(queue, ld);
    };
    // A query tile's loads and its row terms: -lse and -scale D, D = rowsum(dO o O).
    auto prepare_query = [&](std::int64_t i) {
        if (i >= g.q_tiles || q_loaded[i]) return;
        q_loaded[i] = 1;
        const int pr = g.q_rows(i);
        const QTile& x = qs[i];
        load(q_query, x.qT, d, pr, qT_t, 0, g.q0(i));
        load(q_query, x.q, pr, d, q_t, g.q0(i), 0);
        load(q_query, x.doT, d, pr, doT_t, 0, g.q0(i));
        load(q_query, x.dout, pr, d, do_t, g.q0(i), 0);
        load(q_query, o_in.at(i), pr, d, o_t, g.q0(i), 0);
        load(q_query, D.at(i), pr, 1, lse_t, g.q0(i), 0);
        Instruction nl = make(Op::tensor_scalar, b.tile(x.nlse, 0, pr, 0, 1), b.tile(D.at(i), 0, pr, 0, 1));
        nl.alu0 = AluOp::multiply;
        nl.scalar0 = constant(-1.0f);
        b.emit(EngineKind::vector, nl);
        Instruction pm = make(Op::tensor_tensor, b.tile(prod.at(i), 0, pr, 0, d), b.tile(x.dout, 0, pr, 0, d),
                              b.tile(o_in.at(i), 0, pr, 0, d));
        pm.alu0 = AluOp::multiply;
        b.emit(EngineKind::gpsimd, pm);
        Instruction sum = make(Op::tensor_reduce, b.tile(D.at(i), 0, pr, 0, 1), b.tile(prod.at(i), 0, pr, 0, d));
        sum.alu0 = AluOp::add;
        b.emit(EngineKind::vector, sum);
        Instruction nd = make(Op::tensor_scalar, b.tile(x.nD, 0, pr, 0, 1), b.tile(D.at(i), 0, pr, 0, 1));
        nd.alu0 = AluOp::multiply;
        nd.scalar0 = constant(-scale);
        b.emit(EngineKind::vector, nd);
    };
    auto load_keys = [&](std::int64_t j) {
        if (j >= g.kv_blocks || j <= k_loaded) return;
        k_loaded = j;
        const int kc = g.k_cols(j);
        load(q_key, kT.at(j), d, kc, kT_t, 0, g.k0(j));
        load(q_key, vT.at(j), d, kc, vT_t, 0, g.k0(j));
        for (std::int64_t k0 = g.k0(j), u = 0; k0 < g.k0(j) + kc; k0 += sub, ++u) {
            Instruction ld = make(Op::dma_load, b.tile(kk.at(j), 0, static_cast<int>(std::min(sub, g.sk - k0)),
                                                       static_cast<int>(u) * d, d));
            ld.dram = {k_t, k0, std::min(sub, g.sk - k0), 0, g.d};
            b.emit_dma(q_key, ld);
        }
    };

    pipeline(blocks, 4 + extra, [&](int stage, std::int64_t n) {
        const Block& bl = blocks[static_cast<std::size_t>(n)];
        const std::int64_t i = bl.q_tile, j = bl.kv_block;
        const QTile& x = qs[i];
        const int pr = g.q_rows(i), kc = g.k_cols(j);
        const int subs = static_cast<int>(ceil_div(kc, sub));
        auto sub_cols = [&](int u) { return static_cast<int>(std::min<std::int64_t>(sub, kc - u * sub)); };
        if (stage == 0) {
            // Loads run ahead: the next key block once this one starts, the next query tile (first pass).
            load_keys(j);
            if (bl.first) load_keys(j + 1);
            prepare_query(i);
            prepare_query(i + 1);
            b.emit(EngineKind::tensor, make(Op::load_stationary, {}, b.tile(x.qT, 0, d, 0, pr)));
            b.emit(EngineKind::tensor,
                   make(Op::multiply_moving, b.tile(s_ps.at(n), 0, pr, 0, kc), b.tile(kT.at(j), 0, d, 0, kc)));
            b.emit(EngineKind::tensor, make(Op::load_stationary, {}, b.tile(x.doT, 0, d, 0, pr)));
            b.emit(EngineKind::tensor,
                   make(Op::multiply_moving, b.tile(dp_ps.at(n), 0, pr, 0, kc), b.tile(vT.at(j), 0, d, 0, kc)));
            if (bl.masked) mask(b, g, bl, n, s_ps, s_masked);
        } else if (stage <= 1 + extra) {
            // P = exp(scale S - lse): stage 1. With dropout, dO V^T is the gradient of the dropped P: the
            // Vector engine masks it out of PSUM in stage 1 (dP = (dO V^T) o mask), beside the exp, and in
            // stage 2 the Scalar engine takes T from it while the Vector engine masks P for dV.
            const auto drop = [&](const TileRef& dst, const TileRef& src) {
                Instruction dr = make(Op::dropout, dst, src);
                dr.scalar0 = constant(k_attention_dropout);
                b.emit(EngineKind::vector, dr);
            };
            if (stage == 1) {
                if (r.dropout) drop(b.tile(dpz.at(n), 0, pr, 0, kc), b.tile(dp_ps.at(n), 0, pr, 0, kc));
                Instruction ex = make(Op::activation, b.tile(p.at(n), 0, pr, 0, kc),
                                      b.tile(bl.masked ? s_masked.at(n) : s_ps.at(n), 0, pr, 0, kc));
                ex.func = ActFunc::exp;  // P = exp(scale S - lse)
                ex.scalar0 = constant(scale);
                ex.scalar1 = per_row(b.tile(x.nlse, 0, pr, 0, 1));
                b.emit(EngineKind::scalar, ex);
            }
            if (stage == 1 + extra) {
                Instruction tt = make(Op::activation, b.tile(t.at(n), 0, pr, 0, kc),
                                      b.tile((r.dropout ? dpz : dp_ps).at(n), 0, pr, 0, kc));
                tt.scalar0 = constant(scale);  // scale (dP - D)
                tt.scalar1 = per_row(b.tile(x.nD, 0, pr, 0, 1));
                b.emit(EngineKind::scalar, tt);
                Instruction dsi = make(Op::tensor_tensor, b.tile(ds.at(n), 0, pr, 0, kc), b.tile(p.at(n), 0, pr, 0, kc),
                                       b.tile(t.at(n), 0, pr, 0, kc));
                dsi.alu0 = AluOp::multiply;
                b.emit(EngineKind::gpsimd, dsi);
                if (r.dropout) drop(b.tile(pz.at(n), 0, pr, 0, kc), b.tile(p.at(n), 0, pr, 0, kc));
            }
        } else if (stage == 2 + extra) {
            for (int u = 0; u < subs; ++u) {
                const int w = sub_cols(u), c0 = u * static_cast<int>(sub);
                b.emit(EngineKind::tensor,
                       make(Op::load_stationary, {}, b.tile((r.dropout ? pz : p).at(n), 0, pr, c0, w)));
                Instruction mv = make(Op::multiply_moving, b.tile(dv_ps.at(j), 0, w, u * d, d),
                                      b.tile(x.dout, 0, pr, 0, d));  // dV += P^T dO
                mv.accumulate = !bl.first;
                b.emit(EngineKind::tensor, mv);
                b.emit(EngineKind::tensor, make(Op::load_stationary, {}, b.tile(ds.at(n), 0, pr, c0, w)));
                Instruction mk = make(Op::multiply_moving, b.tile(dk_ps.at(j), 0, w, u * d, d),
                                      b.tile(x.q, 0, pr, 0, d));  // dK += dS^T Q
                mk.accumulate = !bl.first;
                b.emit(EngineKind::tensor, mk);
                b.emit(EngineKind::tensor, make(Op::multiply_moving, b.tile(dsT_ps.at(n), 0, w, u * P, pr),
                                                b.tile(ident, 0, pr, 0, pr)));  // dS^T
            }
            const TileRef src = b.tile(dsT_ps.at(n), 0, static_cast<int>(std::min<std::int64_t>(sub, kc)), 0, subs * P);
            b.emit(EngineKind::vector, make(Op::tensor_copy, b.tile(dsT.at(n), 0, src.rows, 0, subs * P), src));
            if (bl.last) {
                // The key block's last products: dV on the scalar engine, dK on the vector engine, stored per 128 keys.
                const int rows = static_cast<int>(std::min<std::int64_t>(sub, kc));
                b.emit(EngineKind::scalar, make(Op::activation, b.tile(dv_out.at(j), 0, rows, 0, subs * d),
                                                b.tile(dv_ps.at(j), 0, rows, 0, subs * d)));
                b.emit(EngineKind::vector, make(Op::tensor_copy, b.tile(dk_out.at(j), 0, rows, 0, subs * d),
                                                b.tile(dk_ps.at(j), 0, rows, 0, subs * d)));
                for (int u = 0; u < subs; ++u) {
                    const int w = sub_cols(u);
                    Instruction sv = make(Op::dma_store, {}, b.tile(dv_out.at(j), 0, w, u * d, d));
                    sv.dram = {dv_t, g.k0(j) + u * sub, w, 0, g.d};
                    b.emit_dma(q_kv_store, sv);
                    Instruction sk = make(Op::dma_store, {}, b.tile(dk_out.at(j), 0, w, u * d, d));
                    sk.dram = {dk_t, g.k0(j) + u * sub, w, 0, g.d};
                    b.emit_dma(q_kv_store, sk);
                }
            }
        } else {
            for (int u = 0; u < subs; ++u) {
                const int w = sub_cols(u);
                b.emit(EngineKind::tensor, make(Op::load_stationary, {}, b.tile(dsT.at(n), 0, w, u * P, pr)));
                Instruction mq = make(Op::multiply_moving, b.tile(dq_ps.at(n), 0, pr, 0, d),
                                      b.tile(kk.at(j), 0, w, u * d, d));  // dQ_i' = dS K
                mq.accumulate = u > 0;
                b.emit(EngineKind::tensor, mq);
            }
            const TileRef acc = b.tile(x.dq, 0, pr, 0, d);
            if (j == 0) {
                b.emit(EngineKind::vector, make(Op::tensor_copy, acc, b.tile(dq_ps.at(n), 0, pr, 0, d)));
            } else {
                Instruction add = make(Op::tensor_tensor, acc, acc, b.tile(dq_ps.at(n), 0, pr, 0, d));
                add.alu0 = AluOp::add;
                b.emit(EngineKind::vector, add);
            }
        }
    });
    for (std::int64_t i = 0; i < g.q_tiles; ++i) {
        const int pr = g.q_rows(i);
        const TileRef y = b.tile(dq_out.at(i), 0, pr, 0, d);
        b.emit(i % 2 ? EngineKind::scalar : EngineKind::vector,
               make(i % 2 ? Op::activation : Op::tensor_copy, y, b.tile(qs[i].dq, 0, pr, 0, d)));
        Instruction st = make(Op::dma_store, {}, y);
        st.dram = {dq_t, g.q0(i), pr, 0, g.d};
        b.emit_dma(q_dq_store, st);
    }

    // FLOPs of the operator over the scores the mask keeps: the recomputed QK^T, dV, dP, dQ and dK, 2 d each;
    // the softmax backward as the unfused graph counts it (two passes of 4).
    out.flops = g.scores() * (10 * static_cast<double>(g.d) + 8);
    finish(out, b, r, g, blocks, macs);
    return out;
}

}  // namespace

LoweredKernel lower_flash_attention(const KernelRequest& r, const hw::ChipSpec& chip) {
    if (r.op == "flash_fwd") {
        // With NC-v4's fast exp, the variant whose busiest Vector/Scalar/GpSimd engine has the least work (the
        // tensor engine's is the same in both), as a kernel author would pick from a profile.
        LoweredKernel scalar_exp = lower_forward(r, chip, false);
        if (chip.core.vector.exp_elems_per_cycle_32bit <= 0) return scalar_exp;
        LoweredKernel vector_exp = lower_forward(r, chip, true);
        return busiest_engine_s(vector_exp.program, chip.core) < busiest_engine_s(scalar_exp.program, chip.core)
                   ? vector_exp
                   : scalar_exp;
    }
    if (r.op == "flash_bwd") return lower_backward(r, chip);
    throw UserError(fmt::format("unknown flash kernel '{}'", r.op));
}

}  // namespace trnsim::lowering
