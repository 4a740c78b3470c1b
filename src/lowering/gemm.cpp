// GEMM lowering: C[M,N] = A[M,K] @ B[K,N] with A given transposed in HBM (lhsT, K x M) as NKI kernels take
// it, so both operands have the contraction dimension K on SBUF partitions.
//
// Orientation (chip.core.tensor_engine.dataflow):
//   ws: rhs is the stationary operand (P = N), lhsT streams (Q = M); the output is C^T (N x M).
//   is: lhsT is stationary (P = M), rhs streams (Q = N); the output is C (M x N).
//   os: output-stationary folds of R x C outputs, both operands stream one K tile per instruction.
//
// Blocking, as an optimised NKI kernel does: a block of the moving operand [K, Qb] stays in SBUF (one
// buffer per K tile) while every block of the stationary operand [K, Pb] streams past it, double-buffered;
// stationary tiles [tk, 128] are loaded into the array once and reused by up to banks/2 MultiplyMoving
// instructions of up to 512 columns, each accumulating over K into its own PSUM bank; two groups of banks
// alternate so that evacuation (PSUM -> SBUF on the Vector and Scalar engines, alternately) and the store
// to HBM overlap the next group's matmuls. Qb and Pb are chosen to minimise HBM traffic within SBUF.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "trnsim/core/error.h"
#include "trnsim/lowering/kernel.h"
#include "trnsim/lowering/program_builder.h"

namespace trnsim::lowering {

using hw::EngineKind;
using hw::Instruction;
using hw::Op;

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
    return (a + b - 1) / b;
}

struct Plan {
    std::int64_t pb = 0;  // stationary block width
    std::int64_t qb = 0;  // moving block width
    std::uint64_t traffic = 0;
    int stat_slots = 2;
};

}  // namespace

LoweredKernel lower_gemm(const KernelRequest& r, const hw::ChipSpec& chip) {
    const auto& core = chip.core;
    const auto& te = core.tensor;
    const bool fp8 = r.dtype == DType::fp8_e4m3 || r.dtype == DType::fp8_e5m2;
    const int pack = fp8 ? te.fp8_k_pack : 1;
    // fp8_k_pack = 4 is NC-v4's MX quad mode, for MXFP8 in both E4M3 and E5M2 (reference 1.4: "NC-v4: +
    // MXFP8 (E5M2/E4M3)" [NCv4][NKI-ARCH3]); the per-block scales are not modelled as traffic.
    const DType out_dtype = r.dtype == DType::fp32 ? DType::fp32 : DType::bf16;
    const bool os = te.dataflow == hw::Dataflow::os;
    const bool ws = te.dataflow == hw::Dataflow::ws;
    const std::int64_t tk = static_cast<std::int64_t>(te.rows) * pack;  // contraction rows per tile
    const std::int64_t ts = os ? te.rows : te.cols;                     // output rows per tile
    const std::int64_t tm =
        os ? te.cols : std::min<std::int64_t>(te.moving_max, 512 * 1024);  // output cols per instruction
    const std::int64_t K = r.k;
    const std::int64_t P = ws ? r.n : r.m;
    const std::int64_t Q = ws ? r.m : r.n;
    const std::int64_t k_tiles = ceil_div(K, tk);
    const std::uint64_t es = dtype_bytes(r.dtype);
    const std::uint64_t oes = dtype_bytes(out_dtype);
    const int banks = core.psum_banks;
    const int groups = banks >= 2 ? 2 : 1;
    const int group_banks = banks / groups;
    if (k_tiles > 1 << 20) throw UserError("gemm: K is absurdly large");

    // Choose the blocks.
    const std::uint64_t budget = core.sbuf_partition_size.count;
    const std::uint64_t out_bytes = static_cast<std::uint64_t>(banks) * static_cast<std::uint64_t>(tm) * oes;
    const std::uint64_t per_col = static_cast<std::uint64_t>(k_tiles) * static_cast<std::uint64_t>(pack) * es;
    Plan best;
    for (int tiles : {4, 2, 1}) {
        Plan p;
        p.pb = std::min<std::int64_t>(P, tiles * ts);
        p.stat_slots = 2;  // double-buffered: the next block loads while this one computes
        const std::uint64_t stat_bytes =
            static_cast<std::uint64_t>(p.stat_slots) * per_col * static_cast<std::uint64_t>(p.pb);
        if (stat_bytes + out_bytes >= budget) continue;
        const auto max_q = static_cast<std::int64_t>((budget - stat_bytes - out_bytes) / per_col);
        if (max_q < std::min(Q, tm)) continue;
        p.qb = std::min(Q, max_q);
        if (p.qb < Q && p.qb >= tm) p.qb = p.qb / tm * tm;
        p.traffic = static_cast<std::uint64_t>(K * P) * es * static_cast<std::uint64_t>(ceil_div(Q, p.qb)) +
                    static_cast<std::uint64_t>(K * Q) * es + static_cast<std::uint64_t>(P * Q) * oes;
        if (best.qb == 0 || p.traffic < best.traffic) best = p;
    }
    if (best.qb == 0) {
        const std::uint64_t need =
            per_col * static_cast<std::uint64_t>(std::min(Q, tm) + 2 * std::min(P, ts)) + out_bytes;
        throw UserError(
            fmt::format("gemm {}x{}x{}: the smallest block (moving [K, {}] + 2 x stationary [K, {}] + PSUM staging) "
                        "needs {} per SBUF "
                        "partition, chip.core.sbuf.partition_size is {}; allowed: a smaller K or a larger SBUF",
                        r.m, r.k, r.n, std::min(Q, tm), std::min(P, ts), to_string(Bytes{need}),
                        to_string(core.sbuf_partition_size)));
    }

    ProgramBuilder b(core);
    LoweredKernel out;
    const int lhsT = b.dram("lhsT", r.dtype, K, r.m, false);
    const int rhs = b.dram("rhs", r.dtype, K, r.n, false);
    const int stat_t = ws ? rhs : lhsT;
    const int mov_t = ws ? lhsT : rhs;
    const int out_t = b.dram(ws ? "outT" : "out", out_dtype, P, Q, true);
    out.inputs = {lhsT, rhs};
    out.output = out_t;
    out.output_transposed = ws;

    std::vector<int> mov(static_cast<std::size_t>(k_tiles));
    std::vector<std::vector<int>> stat(static_cast<std::size_t>(best.stat_slots), std::vector<int>(mov.size()));
    auto tkw = [&](std::int64_t kt) { return static_cast<int>(std::min(tk, K - kt * tk)); };
    for (std::int64_t kt = 0; kt < k_tiles; ++kt) {
        mov[kt] = b.sbuf(fmt::format("moving_k{}", kt), r.dtype, tkw(kt), static_cast<int>(best.qb), pack);
        for (int s = 0; s < best.stat_slots; ++s) {
            stat[s][kt] =
                b.sbuf(fmt::format("stationary{}_k{}", s, kt), r.dtype, tkw(kt), static_cast<int>(best.pb), pack);
        }
    }
    std::vector<int> bank(static_cast<std::size_t>(banks));
    std::vector<int> staging(static_cast<std::size_t>(banks));
    for (int i = 0; i < banks; ++i) {
        bank[i] = b.psum(fmt::format("psum{}", i), static_cast<int>(ts), static_cast<int>(tm));
        staging[i] = b.sbuf(fmt::format("out{}", i), out_dtype, static_cast<int>(ts), static_cast<int>(tm));
    }

    constexpr int q_moving = 0, q_stationary = 1, q_store = 2;
    int block_counter = 0, group_counter = 0, evac_counter = 0;
    for (std::int64_t q0 = 0; q0 < Q; q0 += best.qb) {
        const auto qw = static_cast<int>(std::min(best.qb, Q - q0));
        for (std::int64_t kt = 0; kt < k_tiles; ++kt) {
            Instruction ld;
            ld.op = Op::dma_load;
            ld.dst = b.tile(mov[kt], 0, tkw(kt), 0, qw);
            ld.dram = {mov_t, kt * tk, tkw(kt), q0, qw};
            b.emit_dma(q_moving, ld);
        }
        for (std::int64_t p0 = 0; p0 < P; p0 += best.pb) {
            const auto pw = static_cast<int>(std::min(best.pb, P - p0));
            const int slot = block_counter++ % best.stat_slots;
            for (std::int64_t kt = 0; kt < k_tiles; ++kt) {
                Instruction ld;
                ld.op = Op::dma_load;
                ld.dst = b.tile(stat[slot][kt], 0, tkw(kt), 0, pw);
                ld.dram = {stat_t, kt * tk, tkw(kt), p0, pw};
                b.emit_dma(q_stationary, ld);
            }
            for (int pc0 = 0; pc0 < pw; pc0 += static_cast<int>(ts)) {
                const int pcw = std::min(static_cast<int>(ts), pw - pc0);
                const int n_sub = static_cast<int>(ceil_div(qw, tm));
                for (int g0 = 0; g0 < n_sub; g0 += group_banks) {
                    const int gn = std::min(group_banks, n_sub - g0);
                    const int first_bank = (group_counter++ % groups) * group_banks;
                    for (std::int64_t kt = 0; kt < k_tiles; ++kt) {
                        const auto stat_tile = b.tile(stat[slot][kt], 0, tkw(kt), pc0, pcw);
                        if (!os) {
                            Instruction ls;
                            ls.op = Op::load_stationary;
                            ls.src0 = stat_tile;
                            b.emit(EngineKind::tensor, ls);
                        }
                        for (int j = 0; j < gn; ++j) {
                            const int qc0 = (g0 + j) * static_cast<int>(tm);
                            const int qcw = std::min(static_cast<int>(tm), qw - qc0);
                            Instruction mm;
                            mm.op = os ? Op::matmul_os : Op::multiply_moving;
                            if (os) {
                                mm.src0 = stat_tile;
                                mm.src1 = b.tile(mov[kt], 0, tkw(kt), qc0, qcw);
                            } else {
                                mm.src0 = b.tile(mov[kt], 0, tkw(kt), qc0, qcw);
                            }
                            mm.dst = b.tile(bank[first_bank + j], 0, pcw, 0, qcw);
                            mm.accumulate = kt > 0;
                            b.emit(EngineKind::tensor, mm);
                        }
                    }
                    for (int j = 0; j < gn; ++j) {
                        const int i = first_bank + j;
                        const int qc0 = (g0 + j) * static_cast<int>(tm);
                        const int qcw = std::min(static_cast<int>(tm), qw - qc0);
                        Instruction ev;
                        const bool on_scalar = evac_counter++ % 2 == 1;
                        ev.op = on_scalar ? Op::activation : Op::tensor_copy;
                        ev.src0 = b.tile(bank[i], 0, pcw, 0, qcw);
                        ev.dst = b.tile(staging[i], 0, pcw, 0, qcw);
                        b.emit(on_scalar ? EngineKind::scalar : EngineKind::vector, ev);
                        Instruction st;
                        st.op = Op::dma_store;
                        st.src0 = ev.dst;
                        st.dram = {out_t, p0 + pc0, pcw, q0 + qc0, qcw};
                        b.emit_dma(q_store + i % 2, st);
                    }
                }
            }
        }
    }

    out.flops = 2.0 * static_cast<double>(r.m) * static_cast<double>(r.k) * static_cast<double>(r.n);
    out.shape = {{"m", r.m}, {"k", r.k}, {"n", r.n}};
    out.plan = {
        {"k_tile", tk},
        {"stationary_block", best.pb},
        {"moving_block", best.qb},
        {"moving_blocks", ceil_div(Q, best.qb)},
        {"stationary_blocks", ceil_div(P, best.pb)},
        {"psum_group_banks", group_banks},
        {"expected_read_bytes", static_cast<std::int64_t>(best.traffic - static_cast<std::uint64_t>(P * Q) * oes)},
        {"expected_write_bytes", static_cast<std::int64_t>(static_cast<std::uint64_t>(P * Q) * oes)},
        {"sbuf_bytes_per_partition", static_cast<std::int64_t>(b.sbuf_bytes_per_partition())}};
    out.program = b.take();
    return out;
}

}  // namespace trnsim::lowering
