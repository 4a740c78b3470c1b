// The per-instruction tensor-engine model (trnsim::hw::TensorEngine) and the functional tensor-engine
// semantics (trnsim::hw::FunctionalState) against the cycle-stepped systolic array reference
// (tests/support/systolic_stepped.*), plus closed forms of the per-instruction model at real scale.

#include "support/systolic_stepped.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "trnsim/core/numeric.h"
#include "trnsim/hw/functional.h"
#include "trnsim/hw/isa.h"
#include "trnsim/hw/tensor_engine.h"

namespace {

using trnsim::hw::EngineTiming;
using trnsim::hw::FoldOverlap;
using trnsim::hw::MatmulShape;
using trnsim::hw::Preload;
using trnsim::hw::TensorEngine;
using trnsim::hw::TensorEngineSpec;
using trnsim::testing::run_stepped;
using trnsim::testing::SteppedArrayConfig;
using trnsim::testing::SteppedOp;
using trnsim::testing::SteppedResult;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
    return (a + b - 1) / b;
}

// One tensor-engine instruction of a test program, with its data.
struct TeOp {
    bool ls = false;
    int k = 0;
    int c = 0;  // LS only
    int n = 0;  // MM only
    int rate = 1;
    int pack = 1;
    int bank = 0;             // MM only
    bool accumulate = false;  // MM only
    Eigen::MatrixXf data;     // LS: K x C, MM: K x N
};

struct ArrayMode {
    int rows = 8;
    int cols = 8;
    bool background = true;
    bool pipelined = true;
    int mm_init_latency = 64;
    int ls_cols_per_cycle = 4;
};

std::string describe(const ArrayMode& mode, const std::vector<TeOp>& ops) {
    std::ostringstream out;
    out << mode.rows << "x" << mode.cols << " preload=" << (mode.background ? "background" : "serial")
        << " fold_overlap=" << (mode.pipelined ? "pipelined" : "none") << " mm_init_latency=" << mode.mm_init_latency
        << " ls_cols_per_cycle=" << mode.ls_cols_per_cycle << "\n";
    for (std::size_t i = 0; i < ops.size(); ++i) {
        const TeOp& op = ops[i];
        out << "  op " << i << ": ";
        if (op.ls) {
            out << "LS K=" << op.k << " C=" << op.c;
        } else {
            out << "MM K=" << op.k << " N=" << op.n << " bank=" << op.bank << (op.accumulate ? " accumulate" : "");
        }
        out << " rate=" << op.rate << " pack=" << op.pack << "\n";
    }
    return out.str();
}

TensorEngineSpec make_spec(const ArrayMode& mode) {
    TensorEngineSpec spec;
    spec.clock.hz = 1e9;
    spec.rows = mode.rows;
    spec.cols = mode.cols;
    spec.preload = mode.background ? Preload::background : Preload::serial;
    spec.fold_overlap = mode.pipelined ? FoldOverlap::pipelined : FoldOverlap::none;
    spec.mm_init_latency = mode.mm_init_latency;
    spec.ls_cols_per_cycle = mode.ls_cols_per_cycle;
    spec.fp32_rate = 4;
    spec.fp8_k_pack = 4;
    spec.moving_max = 1 << 20;
    return spec;
}

SteppedArrayConfig make_stepped_config(const ArrayMode& mode) {
    SteppedArrayConfig config;
    config.rows = mode.rows;
    config.cols = mode.cols;
    config.background_preload = mode.background;
    config.fold_overlap = mode.pipelined;
    config.mm_init_latency = mode.mm_init_latency;
    config.ls_cols_per_cycle = mode.ls_cols_per_cycle;
    return config;
}

// Runs the per-instruction model over the program (every op issued with earliest = 0).
std::vector<EngineTiming> run_fast(const ArrayMode& mode, const std::vector<TeOp>& ops) {
    TensorEngine engine(make_spec(mode));
    std::vector<EngineTiming> timing;
    for (const TeOp& op : ops) {
        MatmulShape shape;
        shape.k = op.k;
        shape.c = op.c;
        shape.n = op.n;
        shape.rate = op.rate;
        shape.pack = op.pack;
        timing.push_back(op.ls ? engine.load_stationary(shape, 0) : engine.multiply_moving(shape, 0, op.bank));
    }
    return timing;
}

std::vector<SteppedOp> to_stepped(const std::vector<TeOp>& ops) {
    std::vector<SteppedOp> out;
    for (const TeOp& op : ops) {
        SteppedOp s;
        s.kind = op.ls ? SteppedOp::Kind::load_stationary : SteppedOp::Kind::multiply_moving;
        s.data = op.data;
        s.rate = op.rate;
        s.pack = op.pack;
        s.psum_bank = op.bank;
        s.accumulate = op.accumulate;
        out.push_back(std::move(s));
    }
    return out;
}

// Executes the program with the functional model: one FP32 SBUF buffer per op holding its matrix (FP32 so
// that no value is rounded on the way in), one PSUM buffer per bank large enough for every MM into it.
// Returns, per bank, the [C, N] tile of the last MM that wrote it (0 x 0 for untouched banks).
std::vector<Eigen::MatrixXf> run_functional(const std::vector<TeOp>& ops) {
    using namespace trnsim::hw;
    int banks = 0;
    int max_n = 1;
    int max_c = 1;
    for (const TeOp& op : ops) {
        if (op.ls) {
            max_c = std::max(max_c, op.c);
        } else {
            banks = std::max(banks, op.bank + 1);
            max_n = std::max(max_n, op.n);
        }
    }
    Program program;
    for (std::size_t i = 0; i < ops.size(); ++i) {
        const TeOp& op = ops[i];
        BufferDecl decl;
        decl.name = "op" + std::to_string(i);
        decl.space = MemSpace::sbuf;
        decl.dtype = trnsim::DType::fp32;
        decl.rows = op.k;
        decl.cols = op.ls ? op.c : op.n;
        decl.pack = op.pack;
        program.buffers.push_back(decl);
    }
    const int psum0 = static_cast<int>(program.buffers.size());
    for (int b = 0; b < banks; ++b) {
        BufferDecl decl;
        decl.name = "psum" + std::to_string(b);
        decl.space = MemSpace::psum;
        decl.dtype = trnsim::DType::fp32;
        decl.rows = max_c;
        decl.cols = max_n;
        program.buffers.push_back(decl);
    }

    FunctionalState state(program);
    for (std::size_t i = 0; i < ops.size(); ++i) {
        std::vector<float>& buffer = state.buffer(static_cast<int>(i));
        const Eigen::MatrixXf& m = ops[i].data;
        for (Eigen::Index r = 0; r < m.rows(); ++r) {
            for (Eigen::Index c = 0; c < m.cols(); ++c) {
                buffer[static_cast<std::size_t>(r * m.cols() + c)] = m(r, c);
            }
        }
    }
    std::vector<std::pair<int, int>> last_shape(static_cast<std::size_t>(banks), {0, 0});
    int stationary_c = 0;
    for (std::size_t i = 0; i < ops.size(); ++i) {
        const TeOp& op = ops[i];
        Instruction ins;
        ins.src0 = TileRef{static_cast<std::int32_t>(i), 0, op.k, 0, op.ls ? op.c : op.n};
        if (op.ls) {
            ins.op = Op::load_stationary;
            stationary_c = op.c;
        } else {
            ins.op = Op::multiply_moving;
            ins.dst = TileRef{psum0 + op.bank, 0, stationary_c, 0, op.n};
            ins.accumulate = op.accumulate;
            last_shape[static_cast<std::size_t>(op.bank)] = {stationary_c, op.n};
        }
        state.execute(ins);
    }

    std::vector<Eigen::MatrixXf> psum;
    for (int b = 0; b < banks; ++b) {
        const auto [c_rows, n_cols] = last_shape[static_cast<std::size_t>(b)];
        const std::vector<float>& buffer = state.buffer(psum0 + b);
        Eigen::MatrixXf tile(c_rows, n_cols);
        for (int c = 0; c < c_rows; ++c) {
            for (int n = 0; n < n_cols; ++n) tile(c, n) = buffer[static_cast<std::size_t>(c) * max_n + n];
        }
        psum.push_back(tile);
    }
    return psum;
}

bool bit_equal(const Eigen::MatrixXf& a, const Eigen::MatrixXf& b) {
    if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
    for (Eigen::Index c = 0; c < a.cols(); ++c) {
        for (Eigen::Index r = 0; r < a.rows(); ++r) {
            if (!(a(r, c) == b(r, c))) return false;
        }
    }
    return true;
}

// Random values spread over a few binades. bf16 (the default): every product is exact in FP32, so any
// difference in the order of the FP32 additions shows in the result bits. Full FP32 mantissas: products
// round too, so a fused multiply-add or another product rounding would show as well.
Eigen::MatrixXf random_value_matrix(std::mt19937& rng, int rows, int cols, bool bf16 = true) {
    std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
    std::uniform_int_distribution<int> exponent(-6, 6);
    Eigen::MatrixXf m(rows, cols);
    for (int c = 0; c < cols; ++c) {
        for (int r = 0; r < rows; ++r) {
            const float v = std::ldexp(mantissa(rng), exponent(rng));
            m(r, c) = bf16 ? trnsim::round_bf16(v) : v;
        }
    }
    return m;
}

// A random program the reference accepts: several LS each followed by 1-4 MMs into random banks, with
// accumulate only into a bank of the same [C, N] shape or as the bank's first write.
std::vector<TeOp> random_program(std::mt19937& rng, const ArrayMode& mode, bool mixed_rates, bool bf16_values) {
    auto pick = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    const int banks = pick(1, 3);
    const int program_rate = pick(0, 1) != 0 ? 4 : 1;
    std::vector<std::pair<int, int>> bank_shape(static_cast<std::size_t>(banks), {-1, -1});
    // Reuse a few shapes so that accumulation into a bank of the same shape is frequent.
    const int n_choices[] = {1, pick(1, 8), pick(1, 40)};
    std::vector<TeOp> ops;
    const int folds = pick(2, 5);
    for (int f = 0; f < folds; ++f) {
        TeOp ls;
        ls.ls = true;
        ls.pack = std::vector<int>{1, 2, 4}[static_cast<std::size_t>(pick(0, 2))];
        ls.rate = mixed_rates ? (pick(0, 1) != 0 ? 4 : 1) : program_rate;
        // Full depth, a shallow fold (exercises the write-order interlock) or anything in between.
        const int k_max = mode.rows * ls.pack;
        const int k_kind = pick(0, 3);
        ls.k = k_kind == 0 ? k_max : k_kind == 1 ? pick(1, std::min(3, k_max)) : pick(1, k_max);
        ls.c = pick(0, 2) == 0 ? mode.cols : pick(1, mode.cols);
        ls.data = random_value_matrix(rng, ls.k, ls.c, bf16_values);
        ops.push_back(ls);
        const int mms = pick(1, 4);
        for (int m = 0; m < mms; ++m) {
            TeOp mm;
            mm.k = ls.k;
            mm.rate = ls.rate;
            mm.pack = ls.pack;
            mm.n = n_choices[pick(0, 2)];
            mm.bank = pick(0, banks - 1);
            auto& shape = bank_shape[static_cast<std::size_t>(mm.bank)];
            const bool same_shape = shape.first == ls.c && shape.second == mm.n;
            mm.accumulate = pick(0, 1) != 0 && (shape.first < 0 || same_shape);
            shape = {ls.c, mm.n};
            mm.data = random_value_matrix(rng, mm.k, mm.n, bf16_values);
            ops.push_back(mm);
        }
    }
    return ops;
}

const std::vector<std::pair<int, int>> k_arrays = {{4, 4}, {8, 8}, {16, 8}, {8, 16}};

using Interlock = SteppedArrayConfig::PsumOrderInterlock;

struct RandomStats {
    int programs = 0;
    int programs_timed = 0;  // timing compared op by op
    int ops_timed = 0;
    int banks_compared = 0;
    int interlock_bound = 0;  // MMs whose start the write-order interlock alone determined
};

// Runs `per_combination` random programs for every array size and mode and compares the per-instruction
// timing (op by op, start and end) and the functional PSUM values (bit for bit) with the stepped array.
void compare_random_programs(std::uint32_t seed, int per_combination, bool mixed_rates, RandomStats& stats) {
    std::mt19937 rng(seed);
    const int init_latencies[] = {0, 3, 64};
    const int ls_rates[] = {4, 1, 2};
    for (const auto& [rows, cols] : k_arrays) {
        for (const bool background : {true, false}) {
            for (const bool pipelined : {true, false}) {
                for (int i = 0; i < per_combination; ++i) {
                    ArrayMode mode;
                    mode.rows = rows;
                    mode.cols = cols;
                    mode.background = background;
                    mode.pipelined = pipelined;
                    mode.mm_init_latency = init_latencies[i % 3];
                    mode.ls_cols_per_cycle = ls_rates[(i / 3) % 3];
                    const bool bf16_values = i % 4 != 3;  // every fourth program: full FP32 values
                    const std::vector<TeOp> ops = random_program(rng, mode, mixed_rates, bf16_values);
                    ++stats.programs;
                    INFO("program " << stats.programs << " (seed " << seed << ", " << (bf16_values ? "bf16" : "fp32")
                                    << " values): " << describe(mode, ops));

                    const SteppedArrayConfig config = make_stepped_config(mode);  // per-bank write order
                    const SteppedResult stepped = run_stepped(config, to_stepped(ops));
                    {
                        const std::vector<EngineTiming> fast = run_fast(mode, ops);
                        REQUIRE(fast.size() == stepped.timing.size());
                        const TeOp* previous_mm = nullptr;
                        EngineTiming previous_mm_timing;
                        std::int64_t weights_ready = 0;
                        int k_used = 0;
                        for (std::size_t j = 0; j < ops.size(); ++j) {
                            INFO("op " << j);
                            CHECK(fast[j].start == stepped.timing[j].start);
                            CHECK(fast[j].end == stepped.timing[j].end);
                            ++stats.ops_timed;
                            const TeOp& op = ops[j];
                            if (op.ls) {
                                k_used = static_cast<int>(ceil_div(op.k, op.pack));
                                weights_ready = fast[j].end;
                                continue;
                            }
                            if (previous_mm != nullptr && previous_mm->bank == op.bank) {
                                const std::int64_t interlock =
                                    previous_mm_timing.start + ceil_div(previous_mm->k, previous_mm->pack) - k_used + 1;
                                if (fast[j].start == interlock && interlock > weights_ready &&
                                    interlock > previous_mm_timing.start + previous_mm_timing.busy) {
                                    ++stats.interlock_bound;  // neither the moving port nor the weights
                                }
                            }
                            previous_mm = &op;
                            previous_mm_timing = fast[j];
                        }
                        ++stats.programs_timed;
                    }

                    const std::vector<Eigen::MatrixXf> values = run_functional(ops);
                    REQUIRE(values.size() == stepped.psum.size());
                    for (std::size_t b = 0; b < values.size(); ++b) {
                        INFO("bank " << b);
                        CHECK(bit_equal(values[b], stepped.psum[b]));
                        ++stats.banks_compared;
                    }
                }
            }
        }
    }
}

}  // namespace

TEST_CASE("Random programs: per-instruction timing and functional values equal the cycle-stepped array",
          "[tensor_engine]") {
    // One rate per program (all BF16-rate or all FP32-rate), pack 1/2/4 per stationary.
    RandomStats stats;
    compare_random_programs(20240611, 60, false, stats);
    INFO("programs " << stats.programs << ", timed " << stats.programs_timed << " (" << stats.ops_timed
                     << " ops), banks " << stats.banks_compared << ", interlock-bound MMs " << stats.interlock_bound);
    CHECK(stats.programs == 960);
    CHECK(stats.programs_timed == stats.programs);
    CHECK(stats.interlock_bound > 0);  // the write-order interlock was exercised
}

TEST_CASE("Random programs with FP32- and BF16-rate stationaries mixed: timing and values equal the stepped array",
          "[tensor_engine]") {
    RandomStats stats;
    compare_random_programs(977, 25, true, stats);
    INFO("programs " << stats.programs << ", timed " << stats.programs_timed << " (" << stats.ops_timed
                     << " ops), banks " << stats.banks_compared << ", interlock-bound MMs " << stats.interlock_bound);
    CHECK(stats.programs == 400);
    CHECK(stats.programs_timed == stats.programs);
}

// ---- PSUM write order beyond the preceding MM ------------------------------------------------------------
// An interlock on the immediately preceding MM and its first result only is not enough (the stepped array
// reports a hazard with it); the per-bank rule orders these programs, and the fast model agrees.

namespace {

TeOp ls_op(std::mt19937& rng, int k, int c, int rate = 1, int pack = 1) {
    TeOp op;
    op.ls = true;
    op.k = k;
    op.c = c;
    op.rate = rate;
    op.pack = pack;
    op.data = random_value_matrix(rng, k, c);
    return op;
}

TeOp mm_op(std::mt19937& rng, const TeOp& ls, int n, int bank, bool accumulate = false) {
    TeOp op;
    op.k = ls.k;
    op.n = n;
    op.rate = ls.rate;
    op.pack = ls.pack;
    op.bank = bank;
    op.accumulate = accumulate;
    op.data = random_value_matrix(rng, ls.k, n);
    return op;
}

void check_against_exact_interlock(const ArrayMode& mode, const std::vector<TeOp>& ops, std::size_t op,
                                   std::int64_t expected_start) {
    INFO(describe(mode, ops));
    SteppedArrayConfig config = make_stepped_config(mode);
    config.psum_order_interlock = Interlock::previous_mm;  // the weaker rule lets a hazard through
    CHECK_THROWS_AS(run_stepped(config, to_stepped(ops)), std::logic_error);
    config.psum_order_interlock = Interlock::per_bank;
    const SteppedResult stepped = run_stepped(config, to_stepped(ops));
    CHECK(stepped.timing[op].start == expected_start);
    const std::vector<EngineTiming> fast = run_fast(mode, ops);
    for (std::size_t j = 0; j < ops.size(); ++j) {
        INFO("op " << j);
        CHECK(fast[j].start == stepped.timing[j].start);
        CHECK(fast[j].end == stepped.timing[j].end);
    }
}

}  // namespace

TEST_CASE("An MM waits for an earlier MM into its bank even when another bank's MM is in between", "[tensor_engine]") {
    // MM a (K_used 16) writes bank 0 first at 1 + 16 - 1 = 16; MM b writes bank 1; MM c (K_used 1, bank 0)
    // issues at 3 and writes bank 0 at 3, before MM a. Needed: s_c >= s_a + 16 - 1 + 1 = 17.
    std::mt19937 rng(5);
    ArrayMode mode;
    mode.rows = 16;
    mode.cols = 4;
    mode.mm_init_latency = 0;
    const TeOp deep = ls_op(rng, 16, 1);
    const TeOp shallow = ls_op(rng, 1, 1);
    const std::vector<TeOp> ops = {deep, mm_op(rng, deep, 1, 0), mm_op(rng, deep, 1, 1), shallow,
                                   mm_op(rng, shallow, 1, 0, true)};
    check_against_exact_interlock(mode, ops, 4, 17);
}

TEST_CASE("A BF16-rate MM waits until none of its results can overtake a preceding FP32-rate MM's", "[tensor_engine]") {
    // MM a (rate 4, K_used 16, N 2) writes (0, n) at 4 + 4n + 15: 19, 23. MM b (rate 1, K_used 1) issues at
    // 4 + 16 - 1 + 1 = 20 (first result at 20 > 19) but writes (0, 1) at 21 < 23. Needed:
    // s_b >= s_a + 16 - 1 + 1 + (4 - 1) * (2 - 1) = 23.
    std::mt19937 rng(6);
    ArrayMode mode;
    mode.rows = 16;
    mode.cols = 4;
    mode.mm_init_latency = 0;
    const TeOp fp32 = ls_op(rng, 16, 1, 4);
    const TeOp bf16 = ls_op(rng, 1, 1, 1);
    const std::vector<TeOp> ops = {fp32, mm_op(rng, fp32, 2, 0), bf16, mm_op(rng, bf16, 2, 0, true)};
    check_against_exact_interlock(mode, ops, 3, 23);
}

// ---- Closed forms at real scale ------------------------------------------------------------------------

namespace {

TensorEngineSpec trn_spec(bool background, bool pipelined, int mm_init_latency) {
    ArrayMode mode;
    mode.rows = 128;
    mode.cols = 128;
    mode.background = background;
    mode.pipelined = pipelined;
    mode.mm_init_latency = mm_init_latency;
    TensorEngineSpec spec = make_spec(mode);
    spec.moving_max = 512;
    return spec;
}

MatmulShape shape(int k, int c, int n, int rate = 1, int pack = 1) {
    MatmulShape s;
    s.k = k;
    s.c = c;
    s.n = n;
    s.rate = rate;
    s.pack = pack;
    return s;
}

struct GemmTrace {
    std::vector<EngineTiming> ls;       // one per fold
    std::vector<EngineTiming> mm;       // in issue order
    std::vector<std::size_t> first_mm;  // per fold: index of its first MM
    std::int64_t cycles = 0;
};

// Lowers an M x K x N GEMM onto the array as folds: per spec.cols columns of N and per K tile of
// rows * pack contraction rows, one LoadStationary [K tile, N cols] followed by the M moving vectors
// streamed in MultiplyMoving ops of <= moving_max vectors, each into its own PSUM bank (the same bank for
// the same M chunk of every K tile, accumulating).
GemmTrace run_gemm(const TensorEngineSpec& spec, int m, int k, int n, int rate = 1, int pack = 1) {
    TensorEngine engine(spec);
    GemmTrace trace;
    const int k_tile = spec.rows * pack;
    for (int n0 = 0; n0 < n; n0 += spec.cols) {
        const int c = std::min(spec.cols, n - n0);
        for (int k0 = 0; k0 < k; k0 += k_tile) {
            const int kk = std::min(k_tile, k - k0);
            trace.ls.push_back(engine.load_stationary(shape(kk, c, 0, rate, pack), 0));
            trace.first_mm.push_back(trace.mm.size());
            int bank = 0;
            for (int m0 = 0; m0 < m; m0 += spec.moving_max, ++bank) {
                const int chunk = std::min(spec.moving_max, m - m0);
                trace.mm.push_back(engine.multiply_moving(shape(kk, c, chunk, rate, pack), 0, bank));
                trace.cycles = std::max(trace.cycles, trace.mm.back().end);
            }
        }
    }
    return trace;
}

// SCALE-Sim's weight-stationary cycle count: per fold 2R + C + T - 2 (R rows and C columns used, T moving
// vectors), folds run one after the other.
std::int64_t scale_sim_cycles(int rows, int cols, int m, int k, int n, int pack = 1) {
    std::int64_t total = 0;
    for (int n0 = 0; n0 < n; n0 += cols) {
        const std::int64_t c = std::min(cols, n - n0);
        for (int k0 = 0; k0 < k; k0 += rows * pack) {
            const std::int64_t r = ceil_div(std::min(rows * pack, k - k0), pack);
            total += 2 * r + c + m - 2;
        }
    }
    return total;
}

}  // namespace

TEST_CASE("Serial preload without fold overlap: a folded GEMM takes the SCALE-Sim per-fold cycle count",
          "[tensor_engine]") {
    const TensorEngineSpec spec = trn_spec(false, false, 0);
    struct Case {
        int m, k, n, pack;
        std::int64_t expected;
    };
    const std::vector<Case> cases = {
        {1024, 4096, 4096, 1, 1439744},  // 1024 folds of 2*128 + 128 + 1024 - 2
        {300, 200, 130, 1, 2252},        // ragged K (128 + 72) and N (128 + 2), M < 512
        {1000, 256, 200, 1, 5416},       // M split into 512 + 488, ragged N
        {128, 128, 128, 1, 510},         // one fold
        {1, 1, 1, 1, 2},                 // 2 + 1 + 1 - 2
        {1000, 512, 200, 2, 5416},       // FP8 double-row: K tiles of 256 on 128 rows
        {700, 1000, 300, 4, 6288},       // MX quad: K tiles 512 + 488 -> 128 + 122 rows; N 128+128+44
    };
    for (const Case& tc : cases) {
        INFO("M=" << tc.m << " K=" << tc.k << " N=" << tc.n << " pack=" << tc.pack);
        const GemmTrace trace = run_gemm(spec, tc.m, tc.k, tc.n, 1, tc.pack);
        const std::int64_t scale_sim = scale_sim_cycles(128, 128, tc.m, tc.k, tc.n, tc.pack);
        CHECK(scale_sim == tc.expected);
        CHECK(trace.cycles == scale_sim);
        // Each fold's LoadStationary starts when the previous fold has drained; its MMs stream back to back.
        for (std::size_t f = 0; f < trace.ls.size(); ++f) {
            const std::size_t first = trace.first_mm[f];
            const std::size_t last = f + 1 < trace.ls.size() ? trace.first_mm[f + 1] : trace.mm.size();
            CHECK(trace.ls[f].start == (f == 0 ? 0 : trace.mm[first - 1].end));
            CHECK(trace.mm[first].start == trace.ls[f].end);
            for (std::size_t i = first + 1; i < last; ++i) CHECK(trace.mm[i].start == trace.mm[i - 1].start + 512);
        }
    }
    // The 1024 x 4096 x 4096 lowering: 32 x 32 folds of one 1024-vector stream split 512 + 512.
    const GemmTrace big = run_gemm(spec, 1024, 4096, 4096);
    CHECK(big.ls.size() == 1024);
    CHECK(big.mm.size() == 2048);
}

TEST_CASE("Background preload with pipelined folds streams N=512 MultiplyMoving ops back to back", "[tensor_engine]") {
    const TensorEngineSpec spec = trn_spec(true, true, 64);
    struct Case {
        int m, k, n, rate;
        std::int64_t first_ls;
        std::int64_t drain;  // end of the last MM - (its start + ii) = K_used + C_used - 1 - rate, last fold
    };
    const std::vector<Case> cases = {
        {2048, 512, 256, 1, 32, 128 + 128 - 2},      // 8 folds x 4 MMs
        {1536, 450, 200, 1, 32, 66 + 72 - 2},        // ragged last K tile (66) and N (72)
        {2048, 512, 256, 4, 4 * 32, 128 + 128 - 5},  // FP32: LS and streaming at quarter rate
        {512, 1, 5, 1, 2, 1 + 5 - 2},                // one tiny fold
    };
    for (const Case& tc : cases) {
        INFO("M=" << tc.m << " K=" << tc.k << " N=" << tc.n << " rate=" << tc.rate);
        const GemmTrace trace = run_gemm(spec, tc.m, tc.k, tc.n, tc.rate);
        const std::int64_t ii = 512LL * tc.rate;
        CHECK(trace.ls[0].end == tc.first_ls);
        CHECK(trace.mm[0].start == tc.first_ls);
        for (std::size_t i = 1; i < trace.mm.size(); ++i) {
            INFO("MM " << i);
            CHECK(trace.mm[i].start == trace.mm[i - 1].start + ii);
            CHECK(trace.mm[i].busy == ii);
        }
        for (std::size_t f = 1; f < trace.ls.size(); ++f) {  // every later LS hides behind streaming
            CHECK(trace.ls[f].end <= trace.mm[trace.first_mm[f]].start);
        }
        const auto mms = static_cast<std::int64_t>(trace.mm.size());
        CHECK(trace.cycles == tc.first_ls + ii * mms + tc.drain);
        CHECK(trace.cycles == trace.mm.back().end);
    }
}

TEST_CASE("FP32 streams at a quarter of the BF16 rate", "[tensor_engine]") {
    for (const bool background : {true, false}) {
        for (const bool pipelined : {true, false}) {
            INFO("background=" << background << " pipelined=" << pipelined);
            const TensorEngineSpec spec = trn_spec(background, pipelined, 64);
            for (const int n : {512, 100, 1}) {
                INFO("N=" << n);
                TensorEngine bf16(spec);
                TensorEngine fp32(spec);
                const EngineTiming ls_bf16 = bf16.load_stationary(shape(128, 128, 0, bf16.rate_for(false)), 0);
                const EngineTiming ls_fp32 = fp32.load_stationary(shape(128, 128, 0, fp32.rate_for(true)), 0);
                const EngineTiming a = bf16.multiply_moving(shape(128, 128, n, bf16.rate_for(false)), 0, 0);
                const EngineTiming b = fp32.multiply_moving(shape(128, 128, n, fp32.rate_for(true)), 0, 0);
                CHECK(b.busy == 4 * a.busy);  // moving-port occupancy: 4 * max(N, min(64, 128))
                const std::int64_t drain = 128 + 128 - 2;
                CHECK(a.end - a.start == (n - 1) + 1 + drain);
                CHECK(b.end - b.start == 4 * (n - 1) + 1 + drain);  // the last vector enters 4(N-1) after the first
                CHECK(ls_fp32.busy == (background ? 4 * ls_bf16.busy : ls_bf16.busy));  // serial: K rows
                // A second MM on the same stationary follows at the initiation interval.
                const EngineTiming a2 = bf16.multiply_moving(shape(128, 128, n, 1), 0, 1);
                const EngineTiming b2 = fp32.multiply_moving(shape(128, 128, n, 4), 0, 1);
                CHECK(a2.start - a.start == std::max(n, 64));
                CHECK(b2.start - b.start == 4 * std::max(n, 64));
            }
        }
    }
}

TEST_CASE("FP8 double-row covers K=256 in the time BF16 covers K=128, MX quad K=512", "[tensor_engine]") {
    for (const bool background : {true, false}) {
        for (const bool pipelined : {true, false}) {
            INFO("background=" << background << " pipelined=" << pipelined);
            const TensorEngineSpec spec = trn_spec(background, pipelined, 64);
            TensorEngine bf16(spec);
            TensorEngine fp8(spec);
            TensorEngine mx(spec);
            for (int rep = 0; rep < 3; ++rep) {  // several folds, so pipelining is exercised too
                const EngineTiming l1 = bf16.load_stationary(shape(128, 128, 0, 1, 1), 0);
                const EngineTiming l2 = fp8.load_stationary(shape(256, 128, 0, 1, 2), 0);
                const EngineTiming l4 = mx.load_stationary(shape(512, 128, 0, 1, 4), 0);
                CHECK(l2.start == l1.start);
                CHECK(l2.end == l1.end);
                CHECK(l4.end == l1.end);
                for (int bank = 0; bank < 2; ++bank) {
                    const EngineTiming m1 = bf16.multiply_moving(shape(128, 128, 512, 1, 1), 0, bank);
                    const EngineTiming m2 = fp8.multiply_moving(shape(256, 128, 512, 1, 2), 0, bank);
                    const EngineTiming m4 = mx.multiply_moving(shape(512, 128, 512, 1, 4), 0, bank);
                    CHECK(m2.start == m1.start);
                    CHECK(m2.end == m1.end);
                    CHECK(m4.start == m1.start);
                    CHECK(m4.end == m1.end);
                }
            }
            // Without packing, K = 256 needs two folds of 128 rows.
            const std::int64_t packed = run_gemm(spec, 512, 256, 128, 1, 2).cycles;
            const std::int64_t unpacked = run_gemm(spec, 512, 256, 128, 1, 1).cycles;
            CHECK(packed == run_gemm(spec, 512, 128, 128, 1, 1).cycles);
            CHECK(unpacked > packed);
        }
    }
}

TEST_CASE("A shallower MM into the bank of the preceding deeper MM waits until its first result lands after",
          "[tensor_engine]") {
    // Ragged last K tile of an accumulation: K_used 128 then 8, N = 8. The moving port would allow the second
    // MM 64 cycles after the first (ii = max(8, min(64, 128))); PSUM order needs 128 - 8 + 1 = 121.
    for (const int rate : {1, 4}) {
        INFO("rate=" << rate);
        const TensorEngineSpec spec = trn_spec(true, true, 64);
        for (const bool same_bank : {true, false}) {
            INFO("same_bank=" << same_bank);
            TensorEngine engine(spec);
            engine.load_stationary(shape(128, 128, 0, rate), 0);
            const EngineTiming deep = engine.multiply_moving(shape(128, 128, 8, rate), 0, 3);
            engine.load_stationary(shape(8, 128, 0, rate), 0);
            const EngineTiming shallow = engine.multiply_moving(shape(8, 128, 8, rate), 0, same_bank ? 3 : 4);
            const std::int64_t port = deep.start + rate * 64;
            CHECK(shallow.start == (same_bank ? std::max<std::int64_t>(port, deep.start + 121) : port));
            if (same_bank) CHECK(shallow.start + 8 - 1 > deep.start + 128 - 1);  // first results in order
        }
    }
}
