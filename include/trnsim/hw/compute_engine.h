#pragma once
// Vector, Scalar and GpSimd engines: 128-lane engines that stream the free axis of a tile, modelled per
// instruction with the documented cost formulas [NKI-ARCH1][NKI-ISA-OLD]:
//   busy = start_overhead + max(min_ii, ceil(work * N / elems_per_cycle)) (+ min_ii for an activation
//          that also accumulates its row sums, activation_reduce)
// N elements per partition, `work` the op's passes over the data (1 for one-input ops, 2 for
// tensor_tensor, 8 for a VectorE reciprocal, 13/3 for bn_aggr), elems_per_cycle from the engine's
// data-path width for the dtype. An instruction's result is visible access_latency cycles after its busy
// period (SBUF/PSUM access initiation); an instruction that reads the previous instruction's output on
// the same engine also pays dependency_overhead.

#include <cstdint>
#include <string>

#include "trnsim/core/config.h"
#include "trnsim/core/units.h"
#include "trnsim/hw/isa.h"
#include "trnsim/hw/tensor_engine.h"

namespace trnsim::hw {

struct ComputeEngineSpec {
    EngineKind kind = EngineKind::vector;
    Frequency clock;
    int min_ii = 64;
    int access_latency = 60;
    int dependency_overhead = 100;
    int start_overhead = 0;
    int elems_per_cycle_16bit = 1;
    int elems_per_cycle_32bit = 1;
    // Vector engine only: elements per partition per cycle of `exponential` (NC-v4's fast exp, a multiple of the
    // Scalar engine's activation rate); 0 where the engine has no such instruction.
    double exp_elems_per_cycle_16bit = 0;
    double exp_elems_per_cycle_32bit = 0;

    static void declare(ParamRegistry& registry, EngineKind kind);
    static ComputeEngineSpec from_config(const Config& config, EngineKind kind);
};

class ComputeEngine {
public:
    explicit ComputeEngine(const ComputeEngineSpec& spec);

    // Issues the next instruction of the engine's in-order stream no earlier than `earliest`.
    EngineTiming issue(const Program& program, const Instruction& ins, std::int64_t earliest);
    // Issue-port cycles of one instruction, without dependency effects.
    std::int64_t busy_cycles(const Program& program, const Instruction& ins) const;

    const ComputeEngineSpec& spec() const { return m_spec; }

private:
    ComputeEngineSpec m_spec;
    std::int64_t m_port_free = 0;
    std::int64_t m_prev_start = 0;
    std::int64_t m_prev_busy = 0;
    TileRef m_prev_dst;
    TileRef m_prev_acc;
};

}  // namespace trnsim::hw
