// Lowering of the row-wise operators. Rows map to SBUF partitions (128-row tiles, double-buffered:
// the next tile loads while this one computes and the previous one stores; multi-engine operators are
// software-pipelined over tiles); each row is processed whole, as the NKI tutorials' kernels do.
//   layernorm: VectorE bn_stats + bn_aggr -> mean, var; ScalarE rsqrt(var + eps); VectorE bias = -mean*rstd;
//              ScalarE x*rstd + bias; GpSimd * gamma; VectorE + beta (gamma, beta broadcast to partitions).
//   rmsnorm:   ScalarE square with row-sum accumulation; ScalarE rsqrt(sum/C + eps); VectorE x*rstd;
//              GpSimd * gamma.
//   softmax:   VectorE row max; VectorE -max; ScalarE exp(x - max) with row-sum accumulation;
//              VectorE 1/sum; VectorE e * (1/sum).
//   gelu/silu: ScalarE activation.
//   transpose: TensorE transpose of 128 x 128 tiles (LoadStationary x, MultiplyMoving identity), the
//              identity built once by GpSimd; VectorE/ScalarE evacuate PSUM.
#include <algorithm>

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

constexpr float k_eps = 1e-5f;

LoweredKernel lower_transpose(const KernelRequest& r, const hw::ChipSpec& chip) {
    const auto& core = chip.core;
    const int t = std::min(core.tensor.rows, core.tensor.cols);
    ProgramBuilder b(core);
    LoweredKernel out;
    const int x_t = b.dram("x", r.dtype, r.rows, r.cols, false);
    const int y_t = b.dram("y", r.dtype, r.cols, r.rows, true);
    out.inputs = {x_t};
    out.output = y_t;
    const int ident = b.sbuf("identity", r.dtype, t, t);
    b.emit(EngineKind::gpsimd, make(Op::identity, b.whole(ident)));
    int x[2], y[2], ps[2];
    for (int s = 0; s < 2; ++s) {
        x[s] = b.sbuf(fmt::format("x{}", s), r.dtype, t, t);
        y[s] = b.sbuf(fmt::format("y{}", s), r.dtype, t, t);
        ps[s] = b.psum(fmt::format("psum{}", s), t, t);
    }
    int n = 0;
    for (std::int64_t r0 = 0; r0 < r.rows; r0 += t) {
        const int rw = static_cast<int>(std::min<std::int64_t>(t, r.rows - r0));
        for (std::int64_t c0 = 0; c0 < r.cols; c0 += t, ++n) {
            const int cw = static_cast<int>(std::min<std::int64_t>(t, r.cols - c0));
            const int s = n % 2;
            Instruction ld = make(Op::dma_load, b.tile(x[s], 0, rw, 0, cw));
            ld.dram = {x_t, r0, rw, c0, cw};
            b.emit_dma(n % 2, ld);
            Instruction ls = make(Op::load_stationary, {}, b.tile(x[s], 0, rw, 0, cw));
            b.emit(EngineKind::tensor, ls);
            Instruction mm = make(Op::multiply_moving, b.tile(ps[s], 0, cw, 0, rw), b.tile(ident, 0, rw, 0, rw));
            b.emit(EngineKind::tensor, mm);
            const EngineKind ev_engine = s == 0 ? EngineKind::vector : EngineKind::scalar;
            b.emit(ev_engine, make(s == 0 ? Op::tensor_copy : Op::activation, b.tile(y[s], 0, cw, 0, rw),
                                   b.tile(ps[s], 0, cw, 0, rw)));
            Instruction st = make(Op::dma_store, {}, b.tile(y[s], 0, cw, 0, rw));
            st.dram = {y_t, c0, cw, r0, rw};
            b.emit_dma(2 + n % 2, st);
        }
    }
    out.flops = 0;
    out.program = b.take();
    return out;
}

}  // namespace

LoweredKernel lower_elementwise(const KernelRequest& r, const hw::ChipSpec& chip) {
    if (r.op == "transpose") {
        LoweredKernel k = lower_transpose(r, chip);
        k.shape = {{"rows", r.rows}, {"cols", r.cols}};
        k.plan = {{"tile", std::min(chip.core.tensor.rows, chip.core.tensor.cols)},
                  {"expected_read_bytes", static_cast<std::int64_t>(k.program.dma_read_bytes())},
                  {"expected_write_bytes", static_cast<std::int64_t>(k.program.dma_write_bytes())}};
        return k;
    }
    const auto& core = chip.core;
    const int parts = core.sbuf_partitions;
    const int C = static_cast<int>(r.cols);
    const bool layernorm = r.op == "layernorm", rmsnorm = r.op == "rmsnorm", softmax = r.op == "softmax";
    ProgramBuilder b(core);
    LoweredKernel out;
    const int x_t = b.dram("x", r.dtype, r.rows, r.cols, false);
    const int y_t = b.dram("y", r.dtype, r.rows, r.cols, true);
    out.inputs = {x_t};
    out.output = y_t;
    int gamma = -1, beta = -1;
    auto load_broadcast = [&](const char* name, int queue) {
        const int t = b.dram(name, r.dtype, 1, r.cols, false);
        out.inputs.push_back(t);
        const int buf = b.sbuf(name, DType::fp32, parts, C);
        Instruction ld = make(Op::dma_load, b.whole(buf));
        ld.dram = {t, 0, 1, 0, r.cols};
        b.emit_dma(queue, ld);
        return buf;
    };
    if (layernorm || rmsnorm) gamma = load_broadcast("gamma", 0);
    if (layernorm) beta = load_broadcast("beta", 1);

    // Software pipeline: one stage per hop between engines. At step t, stage s works on tile t - s and
    // later stages are emitted first, so every instruction an in-order engine reaches depends on other
    // engines' instructions of earlier steps only: the engines run concurrently, paced by the busiest.
    //   layernorm: 0 V load, bn_stats, bn_aggr | 1 S rsqrt | 2 V bias | 3 S normalise | 4 G gamma | 5 V beta, store
    //   rmsnorm:   0 S load, square+sum, rsqrt | 1 V normalise | 2 G gamma, store
    //   softmax:   0 V load, max, negate | 1 S exp+sum | 2 V reciprocal, scale, store
    //   gelu/silu: 0 S load, activation, store
    // A buffer live from stage a to stage b needs b - a + 2 slots (one more lets the next tile's write start
    // while the oldest is still read).
    struct Live {
        int first, last;
    };
    const int stages = layernorm ? 6 : rmsnorm || softmax ? 3 : 1;
    const Live live_x = layernorm ? Live{0, 3} : rmsnorm || softmax ? Live{0, 1} : Live{0, 0};
    const Live live_small = layernorm ? Live{0, 3} : rmsnorm ? Live{0, 1} : Live{0, 2};
    const Live live_work = layernorm ? Live{3, 5} : rmsnorm ? Live{1, 2} : Live{1, 2};
    const Live live_y = {stages - 1, stages - 1};
    const int chunks = (C + 511) / 512;
    auto allocate = [&](const char* name, DType dtype, int cols, Live live) {
        std::vector<int> slots(static_cast<std::size_t>(live.last - live.first + 2));
        for (std::size_t i = 0; i < slots.size(); ++i)
            slots[i] = b.sbuf(fmt::format("{}{}", name, i), dtype, parts, cols);
        return slots;
    };
    const std::vector<int> x = allocate("x", r.dtype, C, live_x);
    const std::vector<int> y = allocate("y", r.dtype, C, live_y);
    std::vector<int> work, small, stats;
    if (layernorm || rmsnorm || softmax) {
        work = allocate("work", DType::fp32, C, live_work);
        small = allocate("row_scalars", DType::fp32, 4, live_small);
    }
    if (layernorm) stats = allocate("stats", DType::fp32, 3 * chunks, Live{0, 0});
    if (b.sbuf_bytes_per_partition() > core.sbuf_partition_size.count) {
        throw UserError(fmt::format(
            "{} with --cols {}: the pipelined row tiles need {} per SBUF partition, "
            "chip.core.sbuf.partition_size is {}; allowed: fewer columns",
            r.op, r.cols, to_string(Bytes{b.sbuf_bytes_per_partition()}), to_string(core.sbuf_partition_size)));
    }
    const auto tiles = static_cast<int>((r.rows + parts - 1) / parts);
    auto rows_of = [&](int n) {
        return static_cast<int>(std::min<std::int64_t>(parts, r.rows - std::int64_t(n) * parts));
    };
    auto slot = [](const std::vector<int>& v, int n) { return v[static_cast<std::size_t>(n) % v.size()]; };

    auto stage = [&](int st, int n) {
        const int p = rows_of(n);
        const std::int64_t r0 = std::int64_t(n) * parts;
        const auto X = b.tile(slot(x, n), 0, p, 0, C);
        const auto Y = b.tile(slot(y, n), 0, p, 0, C);
        auto W = [&] { return b.tile(slot(work, n), 0, p, 0, C); };
        auto col = [&](int c) { return b.tile(slot(small, n), 0, p, c, 1); };
        auto store = [&] {
            Instruction sto = make(Op::dma_store, {}, Y);
            sto.dram = {y_t, r0, p, 0, r.cols};
            b.emit_dma(2 + n % 2, sto);
        };
        if (st == 0) {
            Instruction ld = make(Op::dma_load, X);
            ld.dram = {x_t, r0, p, 0, r.cols};
            b.emit_dma(n % 2, ld);
        }
        if (layernorm) {
            const auto S = b.tile(slot(stats, n), 0, p, 0, 3 * chunks);
            if (st == 0) {
                b.emit(EngineKind::vector, make(Op::bn_stats, S, X));
                b.emit(EngineKind::vector, make(Op::bn_aggr, b.tile(slot(small, n), 0, p, 0, 2), S));
            } else if (st == 1) {
                Instruction rs = make(Op::activation, col(2), col(1));  // rstd = 1/sqrt(var + eps)
                rs.func = ActFunc::rsqrt;
                rs.scalar0 = constant(1.0f);
                rs.scalar1 = constant(k_eps);
                b.emit(EngineKind::scalar, rs);
            } else if (st == 2) {
                Instruction bias = make(Op::tensor_scalar, col(3), col(0));  // -mean * rstd
                bias.alu0 = AluOp::multiply;
                bias.scalar0 = per_row(col(2));
                bias.alu1 = AluOp::multiply;
                bias.scalar1 = constant(-1.0f);
                b.emit(EngineKind::vector, bias);
            } else if (st == 3) {
                Instruction norm = make(Op::activation, W(), X);  // x * rstd - mean * rstd
                norm.scalar0 = per_row(col(2));
                norm.scalar1 = per_row(col(3));
                b.emit(EngineKind::scalar, norm);
            } else if (st == 4) {
                Instruction g = make(Op::tensor_tensor, W(), W(), b.tile(gamma, 0, p, 0, C));
                g.alu0 = AluOp::multiply;
                b.emit(EngineKind::gpsimd, g);
            } else {
                Instruction be = make(Op::tensor_tensor, Y, W(), b.tile(beta, 0, p, 0, C));
                be.alu0 = AluOp::add;
                b.emit(EngineKind::vector, be);
                store();
            }
        } else if (rmsnorm) {
            if (st == 0) {
                Instruction sq = make(Op::activation, W(), X);  // row sums of x^2 (values discarded)
                sq.func = ActFunc::square;
                sq.accumulate = true;
                sq.acc = col(0);
                b.emit(EngineKind::scalar, sq);
                Instruction rs = make(Op::activation, col(1), col(0));  // 1/sqrt(sum/C + eps)
                rs.func = ActFunc::rsqrt;
                rs.scalar0 = constant(1.0f / static_cast<float>(C));
                rs.scalar1 = constant(k_eps);
                b.emit(EngineKind::scalar, rs);
            } else if (st == 1) {
                Instruction norm = make(Op::tensor_scalar, W(), X);
                norm.alu0 = AluOp::multiply;
                norm.scalar0 = per_row(col(1));
                b.emit(EngineKind::vector, norm);
            } else {
                Instruction g = make(Op::tensor_tensor, Y, W(), b.tile(gamma, 0, p, 0, C));
                g.alu0 = AluOp::multiply;
                b.emit(EngineKind::gpsimd, g);
                store();
            }
        } else if (softmax) {
            if (st == 0) {
                Instruction mx = make(Op::tensor_reduce, col(0), X);
                mx.alu0 = AluOp::max;
                b.emit(EngineKind::vector, mx);
                Instruction neg = make(Op::tensor_scalar, col(1), col(0));
                neg.alu0 = AluOp::multiply;
                neg.scalar0 = constant(-1.0f);
                b.emit(EngineKind::vector, neg);
            } else if (st == 1) {
                Instruction ex = make(Op::activation, W(), X);  // exp(x - max), row sums
                ex.func = ActFunc::exp;
                ex.scalar0 = constant(1.0f);
                ex.scalar1 = per_row(col(1));
                ex.accumulate = true;
                ex.acc = col(2);
                b.emit(EngineKind::scalar, ex);
            } else {
                Instruction rc = make(Op::activation, col(3), col(2));
                rc.func = ActFunc::reciprocal;
                b.emit(EngineKind::vector, rc);
                Instruction sc = make(Op::tensor_scalar, Y, W());
                sc.alu0 = AluOp::multiply;
                sc.scalar0 = per_row(col(3));
                b.emit(EngineKind::vector, sc);
                store();
            }
        } else {  // gelu, silu
            Instruction act = make(Op::activation, Y, X);
            act.func = r.op == "gelu" ? ActFunc::gelu_tanh : ActFunc::silu;
            b.emit(EngineKind::scalar, act);
            store();
        }
    };
    for (int t = 0; t < tiles + stages - 1; ++t) {
        for (int st = stages - 1; st >= 0; --st) {
            if (t - st >= 0 && t - st < tiles) stage(st, t - st);
        }
    }
    // Model FLOPs per element, counting each arithmetic operation the operator needs once:
    // layernorm 8 (mean 1, variance 3, normalise 2, affine 2), rmsnorm 4, softmax 4 (max, subtract+exp,
    // sum, scale), gelu 8 (tanh form), silu 4.
    const double per_elem = layernorm ? 8 : rmsnorm ? 4 : softmax ? 4 : r.op == "gelu" ? 8 : 4;
    out.flops = per_elem * static_cast<double>(r.rows) * static_cast<double>(r.cols);
    out.shape = {{"rows", r.rows}, {"cols", r.cols}};
    out.plan = {{"row_tile", parts},
                {"pipeline_stages", stages},
                {"sbuf_bytes_per_partition", static_cast<std::int64_t>(b.sbuf_bytes_per_partition())}};
    out.program = b.take();
    out.plan["expected_read_bytes"] = static_cast<std::int64_t>(out.program.dma_read_bytes());
    out.plan["expected_write_bytes"] = static_cast<std::int64_t>(out.program.dma_write_bytes());
    return out;
}

}  // namespace trnsim::lowering
