#pragma once

// Cycle-stepped reference model of a weight-stationary systolic array ("every PE, every cycle").
//
// Models a rows x cols grid of processing elements (PEs). Each PE holds active weights, shadow weights
// (background preload), a moving-data register that flows right one PE per cycle and a partial-sum
// register that flows down one PE per cycle. Two in-order issue ports (weight port for LoadStationary,
// moving port for MultiplyMoving) pick the earliest cycle allowed by the hardware interlocks. Results are
// produced only by the stepped registers, so a timing mistake shows up as wrong numbers or as a
// std::logic_error from the built-in hazard checks. Used by tests to prove the fast per-instruction
// timing model exact.

#include <Eigen/Dense>

#include <cstdint>
#include <vector>

namespace trnsim::testing {

struct SteppedArrayConfig {
    int rows = 8;                    // physical PE rows (contraction / partition axis)
    int cols = 8;                    // physical PE columns (stationary free axis)
    bool background_preload = true;  // false = "serial" preload (weights shifted in from the top edge)
    bool fold_overlap = true;        // false = "none": the first MM of a new stationary waits for the drain
    int mm_init_latency = 64;        // cycles
    int ls_cols_per_cycle = 4;       // fast LoadStationary rate (background mode only)
    // PSUM write-order interlock (what a write-order scoreboard implements). Result (c, n) of an MM issued
    // at s reaches PSUM at s + rate*n + K_used + c - 1, so an MM issued no earlier than
    //   s_prev + K_used(prev) - K_used + 1
    // has its first result (c = 0, n = 0) land strictly after the first result of `prev`; with equal rates
    // every other common element is then ordered too.
    //   previous_mm: prev = the immediately preceding MM (program order), if it writes the same bank. Too
    //                weak in general (tests show the hazards it lets through).
    //   per_bank:    the exact condition for program-order writes, and the rule of the per-instruction model
    //                (trnsim::hw::TensorEngine::multiply_moving): for every earlier MM i into the same bank,
    //                s >= s_i + K_used(i) - K_used + 1 + max(0, (rate_i - rate) * (min(N_i, N) - 1))
    //                (with equal rates: s_i + K_used(i) - K_used + 1 for the latest earlier MM into the bank).
    //   none:        testing only, no interlock: shows that check_psum_order catches the hazard.
    enum class PsumOrderInterlock { none, previous_mm, per_bank };
    PsumOrderInterlock psum_order_interlock = PsumOrderInterlock::per_bank;

    // Self-check knobs (defaults give the specified hardware behaviour).
    // Testing only: let an MM issue this many cycles before its stationary is ready. Used to prove that the
    // per-PE weight tag check fires (throws std::logic_error) when the interlocks are too weak.
    int interlock_slack = 0;
    // Throw std::logic_error when a PSUM element is written by an MM after a later MM (program order)
    // already wrote it, i.e. when the array's write order differs from program order. When false, writes
    // land in arrival order like the hardware would do.
    bool check_psum_order = true;
};

struct SteppedOp {
    enum class Kind { load_stationary, multiply_moving };
    Kind kind = Kind::multiply_moving;
    Eigen::MatrixXf data;     // LS: K x C stationary weights; MM: K x N moving data
    int rate = 1;             // 1 (bf16/fp8), 4 (fp32: one moving vector every 4 cycles)
    int pack = 1;             // K elements per PE (1, 2 = fp8 double-row, 4 = MX quad)
    int psum_bank = 0;        // MM only
    bool accumulate = false;  // MM only: add into the bank instead of overwriting
};

struct SteppedOpTiming {
    std::int64_t start = 0;
    std::int64_t end = 0;  // exclusive
};

struct SteppedResult {
    std::vector<SteppedOpTiming> timing;  // one per op, in op order
    // Per bank touched (index = bank; untouched lower banks are 0 x 0): C x N of the last MM written there.
    std::vector<Eigen::MatrixXf> psum;
    std::int64_t cycles = 0;  // end (exclusive) of the last MM to finish, = cycle count from 0
};

// Steps the array cycle by cycle over `ops` (program order) and returns per-op timing and PSUM contents.
// Throws std::invalid_argument for malformed input and std::logic_error if a self-check detects a hazard.
SteppedResult run_stepped(const SteppedArrayConfig& config, const std::vector<SteppedOp>& ops);

}  // namespace trnsim::testing
