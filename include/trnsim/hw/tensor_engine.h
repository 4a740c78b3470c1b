#pragma once
// Tensor engine: an R x C weight-stationary systolic array, modelled per instruction.
//
// Mechanism (docs/hw/neuron_core.md derives every formula; a cycle-stepped reference in tests checks it):
// - MultiplyMoving streams N moving vectors; vector n enters row r at s + rate*n + r and moves one PE
//   right per cycle; partial sums move one PE down per cycle and leave row K_used-1 into PSUM.
//   end = s + rate*(N-1) + K_used + C_used - 1. The moving port is busy for the initiation interval
//   ii = rate * max(N, min(mm_init_latency, C_used))                                    [NKI-ISA-OLD]
// - LoadStationary, background (default): writes shadow weights over the weight port in
//   b = rate * ceil(C / ls_cols_per_cycle) cycles ("fast LoadStationary", [NKI-ARCH1]) while the
//   previous MultiplyMoving still streams; the first MultiplyMoving after it swaps shadow -> active in a
//   wave that travels with its data. Serial (textbook): weights shift down from the top edge, one row per
//   cycle (K_used cycles), into an empty array.
// - fold_overlap none: the first MultiplyMoving after a LoadStationary waits for the array to drain.
// - FP32 is quarter rate (rate 4); FP8 packs fp8_k_pack contraction rows per PE row (double-row on
//   Trainium2, MX quad on Trainium3), so K_used = ceil(K / pack).
// - Output stationary (dataflow os): a fold streams T = K; end = s + rate*(T-1) + 2R + C - 1 (fill, compute,
//   drain of R rows).
// - PSUM write order: a MultiplyMoving may not overtake any earlier one still writing the same bank (a
//   shallower K or a faster rate reaches PSUM sooner): for every such earlier MM i,
//   s >= s_i + K_used(i) - K_used + 1 + max(0, (rate_i - rate) * (min(N_i, N) - 1)),
//   so that every element lands after the same element of MM i. Found and checked by the stepped reference.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "trnsim/core/config.h"
#include "trnsim/core/units.h"

namespace trnsim::hw {

enum class Dataflow { ws, os, is };
enum class Preload { background, serial };
enum class FoldOverlap { pipelined, none };

struct TensorEngineSpec {
    Frequency clock;
    int rows = 128;
    int cols = 128;
    Dataflow dataflow = Dataflow::ws;
    Preload preload = Preload::background;
    FoldOverlap fold_overlap = FoldOverlap::pipelined;
    int mm_init_latency = 64;
    int ls_cols_per_cycle = 4;
    int fp32_rate = 4;
    int fp8_k_pack = 1;
    int moving_max = 512;

    static void declare(ParamRegistry& registry);
    static TensorEngineSpec from_config(const Config& config);
};

const char* to_string(Dataflow d);

// Shape of one tensor-engine instruction after dtype rules are applied.
struct MatmulShape {
    int k = 0;     // contraction rows (logical)
    int c = 0;     // stationary free size (columns used), or R x C for os
    int n = 0;     // moving free size (streamed vectors)
    int r = 0;     // os only: output rows
    int rate = 1;  // cycles per moving vector
    int pack = 1;  // contraction elements per PE row
};

struct EngineTiming {
    std::int64_t start = 0;  // cycle the instruction starts
    std::int64_t busy = 0;   // cycles the engine's issue port is occupied
    std::int64_t end = 0;    // cycle its result is complete (exclusive)
};

class TensorEngine {
public:
    explicit TensorEngine(const TensorEngineSpec& spec);

    // Each call issues the next instruction of the in-order stream no earlier than `earliest`.
    EngineTiming load_stationary(const MatmulShape& shape, std::int64_t earliest);
    // `psum_bank` identifies the accumulation target: results must reach it in program order.
    EngineTiming multiply_moving(const MatmulShape& shape, std::int64_t earliest, int psum_bank);
    EngineTiming matmul_os(const MatmulShape& shape, std::int64_t earliest, int psum_bank);

    const TensorEngineSpec& spec() const { return m_spec; }
    // Rate and pack for an input dtype on this array.
    int rate_for(bool fp32) const { return fp32 ? m_spec.fp32_rate : 1; }

private:
    TensorEngineSpec m_spec;
    std::int64_t m_ls_port_free = 0;   // weight port
    std::int64_t m_ls_end = 0;         // serial: previous load finished
    std::int64_t m_weights_ready = 0;  // the stationary's weights are fully issued
    std::int64_t m_mm_port_free = 0;   // moving port
    std::int64_t m_last_mm_start = 0;
    std::int64_t m_drained = 0;  // every issued MultiplyMoving has written PSUM
    bool m_new_stationary = false;
    struct InFlight {
        std::int64_t start, end;
        int k_used, rate, n;
    };
    std::map<int, std::vector<InFlight>> m_writing;  // PSUM bank -> MultiplyMoving still writing it
    std::int64_t order_after_writers(int bank, std::int64_t start, int k_used, int rate, int n);
    int m_k_used = 0;
    int m_c_used = 0;
};

}  // namespace trnsim::hw
