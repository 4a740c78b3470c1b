#include "trnsim/hw/compute_engine.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

namespace trnsim::hw {

namespace {

std::string prefix_for(EngineKind kind) {
    return std::string("chip.core.") + engine_name(kind) + "_engine.";
}

bool overlaps(const TileRef& a, const TileRef& b) {
    if (!a.valid() || !b.valid() || a.buffer != b.buffer) return false;
    return a.row0 < b.row0 + b.rows && b.row0 < a.row0 + a.rows && a.col0 < b.col0 + b.cols && b.col0 < a.col0 + a.cols;
}

bool reads(const Instruction& ins, const TileRef& t) {
    return overlaps(ins.src0, t) || overlaps(ins.src1, t) || (ins.scalar0.per_row && overlaps(ins.scalar0.tile, t)) ||
           (ins.scalar1.per_row && overlaps(ins.scalar1.tile, t)) || (ins.accumulate && overlaps(ins.acc, t));
}

}  // namespace

void ComputeEngineSpec::declare(ParamRegistry& r, EngineKind kind) {
    const std::string p = prefix_for(kind);
    const std::string name = engine_name(kind);
    r.declare({p + "clock", ParamType::frequency, name + " engine clock", std::nullopt, "", {}, 1e6, 1e11});
    r.declare({p + "min_ii",
               ParamType::integer,
               "minimum initiation interval, engine cycles",
               "64",
               "[NKI-ARCH1][NKI-ISA-OLD]",
               {},
               0,
               1e6});
    r.declare({p + "access_latency",
               ParamType::integer,
               "SBUF/PSUM access-initiation latency before a result is visible, engine cycles",
               "60",
               "[NKI-ARCH1]",
               {},
               0,
               1e6});
    r.declare({p + "dependency_overhead",
               ParamType::integer,
               "extra cycles when an instruction reads the previous instruction's output on the same engine",
               "100",
               "[NKI-ARCH1]",
               {},
               0,
               1e6});
    r.declare({p + "start_overhead",
               ParamType::integer,
               "fixed instruction start cost, engine cycles",
               kind == EngineKind::gpsimd ? "150" : "0",
               kind == EngineKind::gpsimd ? "[NKI-ISA-OLD] GPSIMD_START" : "[NKI-ISA-OLD] (only GpSimd documents one)",
               {},
               0,
               1e6});
    r.declare({p + "elems_per_cycle_16bit",
               ParamType::integer,
               "elements per partition per cycle for 8/16-bit data (data-path width / 128 partitions)",
               std::nullopt,
               "",
               {},
               1,
               64});
    r.declare({p + "elems_per_cycle_32bit",
               ParamType::integer,
               "elements per partition per cycle for 32-bit data",
               std::nullopt,
               "",
               {},
               1,
               64});
    if (kind == EngineKind::vector) {
        r.declare({p + "fast_exp",
                   ParamType::integer,
                   "the `exponential` instruction runs at this many times the Scalar engine's activation rate "
                   "(elements per cycle at the same data width, scaled by the clocks); 0: no such instruction",
                   "0",
                   "[NKI-EXP] available only on NeuronCore-v4",
                   {},
                   0,
                   64});
    }
}

ComputeEngineSpec ComputeEngineSpec::from_config(const Config& c, EngineKind kind) {
    const std::string p = prefix_for(kind);
    ComputeEngineSpec s;
    s.kind = kind;
    s.clock = c.get_frequency(p + "clock");
    s.min_ii = static_cast<int>(c.get_int(p + "min_ii"));
    s.access_latency = static_cast<int>(c.get_int(p + "access_latency"));
    s.dependency_overhead = static_cast<int>(c.get_int(p + "dependency_overhead"));
    s.start_overhead = static_cast<int>(c.get_int(p + "start_overhead"));
    s.elems_per_cycle_16bit = static_cast<int>(c.get_int(p + "elems_per_cycle_16bit"));
    s.elems_per_cycle_32bit = static_cast<int>(c.get_int(p + "elems_per_cycle_32bit"));
    if (kind == EngineKind::vector) {
        const double fast = static_cast<double>(c.get_int("chip.core.vector_engine.fast_exp"));
        const std::string sp = prefix_for(EngineKind::scalar);
        const double clocks = c.get_frequency(sp + "clock").hz / s.clock.hz;
        s.exp_elems_per_cycle_16bit = fast * static_cast<double>(c.get_int(sp + "elems_per_cycle_16bit")) * clocks;
        s.exp_elems_per_cycle_32bit = fast * static_cast<double>(c.get_int(sp + "elems_per_cycle_32bit")) * clocks;
    }
    return s;
}

ComputeEngine::ComputeEngine(const ComputeEngineSpec& spec) : m_spec(spec) {}

std::int64_t ComputeEngine::busy_cycles(const Program& program, const Instruction& ins) const {
    const TileRef& data = ins.src0.valid() ? ins.src0 : ins.dst;
    const BufferDecl& buf = program.buffers.at(static_cast<std::size_t>(data.buffer));
    // The widest dtype touched sets the data-path rate (PSUM is FP32).
    std::size_t widest = dtype_bytes(buf.dtype);
    if (ins.dst.valid()) widest = std::max(widest, dtype_bytes(program.buffers.at(ins.dst.buffer).dtype));
    double epc = widest >= 4 ? m_spec.elems_per_cycle_32bit : m_spec.elems_per_cycle_16bit;
    if (ins.op == Op::exponential) {
        epc = widest >= 4 ? m_spec.exp_elems_per_cycle_32bit : m_spec.exp_elems_per_cycle_16bit;
        if (epc <= 0) {
            throw std::logic_error(
                fmt::format("exponential on the {} engine, which has no such instruction", engine_name(m_spec.kind)));
        }
    }
    const double n = static_cast<double>(data.cols) * buf.pack;
    double work = 1.0;
    std::int64_t extra = 0;
    switch (ins.op) {
        case Op::tensor_tensor: work = 2.0; break;
        case Op::activation:
            if (ins.func == ActFunc::reciprocal && m_spec.kind == EngineKind::vector) work = 8.0;
            if (ins.accumulate) extra = m_spec.min_ii;  // activation_reduce = max(MIN_II, N) + MIN_II
            break;
        case Op::exponential:
            if (ins.accumulate) extra = m_spec.min_ii;  // as activation_reduce
            break;
        case Op::bn_aggr: work = 13.0 / 3.0; break;
        case Op::identity: break;  // iota over the free axis, then affine_select
        default: break;
    }
    const auto stream = static_cast<std::int64_t>(std::ceil(work * n / epc));
    return m_spec.start_overhead + std::max<std::int64_t>(m_spec.min_ii, stream) + extra;
}

EngineTiming ComputeEngine::issue(const Program& program, const Instruction& ins, std::int64_t earliest) {
    EngineTiming t;
    t.start = std::max(earliest, m_port_free);
    if (reads(ins, m_prev_dst) || reads(ins, m_prev_acc)) {
        t.start = std::max(t.start, m_prev_start + m_prev_busy + m_spec.dependency_overhead);
    }
    t.busy = busy_cycles(program, ins);
    t.end = t.start + t.busy + m_spec.access_latency;
    m_port_free = t.start + t.busy;
    m_prev_start = t.start;
    m_prev_busy = t.busy;
    m_prev_dst = ins.dst;
    m_prev_acc = ins.accumulate ? ins.acc : TileRef{};
    return t;
}

}  // namespace trnsim::hw
