// Tests of the cycle-stepped weight-stationary systolic array reference model.

#include "support/systolic_stepped.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

namespace {

using trnsim::testing::run_stepped;
using trnsim::testing::SteppedArrayConfig;
using trnsim::testing::SteppedOp;
using trnsim::testing::SteppedResult;

Eigen::MatrixXf random_matrix(std::mt19937& rng, int rows, int cols) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    Eigen::MatrixXf m(rows, cols);
    for (int c = 0; c < cols; ++c) {
        for (int r = 0; r < rows; ++r) m(r, c) = dist(rng);
    }
    return m;
}

// Independent sequential reference: per (c, n), float sum over k in increasing order of w[k][c] * x[k][n]
// with a separately rounded product.
Eigen::MatrixXf reference_mm(const Eigen::MatrixXf& w, const Eigen::MatrixXf& x) {
    Eigen::MatrixXf out(w.cols(), x.cols());
    for (Eigen::Index c = 0; c < w.cols(); ++c) {
        for (Eigen::Index n = 0; n < x.cols(); ++n) {
            float p = 0.0f;
            for (Eigen::Index k = 0; k < w.rows(); ++k) {
                volatile float product = w(k, c) * x(k, n);
                p = p + product;
            }
            out(c, n) = p;
        }
    }
    return out;
}

bool bit_equal(const Eigen::MatrixXf& a, const Eigen::MatrixXf& b) {
    if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
    for (Eigen::Index c = 0; c < a.cols(); ++c) {
        for (Eigen::Index r = 0; r < a.rows(); ++r) {
            if (a(r, c) != b(r, c)) return false;
        }
    }
    return true;
}

SteppedOp load_stationary(Eigen::MatrixXf w, int rate = 1, int pack = 1) {
    SteppedOp op;
    op.kind = SteppedOp::Kind::load_stationary;
    op.data = std::move(w);
    op.rate = rate;
    op.pack = pack;
    return op;
}

SteppedOp multiply_moving(Eigen::MatrixXf x, int bank, bool accumulate = false, int rate = 1, int pack = 1) {
    SteppedOp op;
    op.kind = SteppedOp::Kind::multiply_moving;
    op.data = std::move(x);
    op.rate = rate;
    op.pack = pack;
    op.psum_bank = bank;
    op.accumulate = accumulate;
    return op;
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
    return (a + b - 1) / b;
}

// Expected MM end (exclusive): last MAC at s + rate*(N-1) + (K_used-1) + (C_used-1).
std::int64_t mm_end(std::int64_t start, int rate, int n, int k_used, int c_used) {
    return start + static_cast<std::int64_t>(rate) * (n - 1) + k_used + c_used - 1;
}

}  // namespace

TEST_CASE("A single LoadStationary and MultiplyMoving match the sequential float reference and drain on time",
          "[systolic_stepped]") {
    std::mt19937 rng(1234);
    SteppedArrayConfig config;
    config.rows = 4;
    config.cols = 4;

    struct Case {
        int k, c, n, rate, pack;
        bool background;
    };
    const std::vector<Case> cases = {
        {4, 4, 5, 1, 1, true},  {3, 2, 7, 1, 1, true},  {4, 3, 5, 4, 1, true},  {7, 4, 6, 1, 2, true},
        {16, 4, 3, 1, 4, true}, {13, 3, 2, 4, 4, true}, {4, 4, 5, 1, 1, false}, {8, 2, 9, 4, 2, false},
        {1, 1, 1, 1, 1, true},  {1, 1, 1, 1, 1, false},
    };
    for (const Case& tc : cases) {
        INFO("K=" << tc.k << " C=" << tc.c << " N=" << tc.n << " rate=" << tc.rate << " pack=" << tc.pack
                  << " background=" << tc.background);
        config.background_preload = tc.background;
        const Eigen::MatrixXf w = random_matrix(rng, tc.k, tc.c);
        const Eigen::MatrixXf x = random_matrix(rng, tc.k, tc.n);
        const SteppedResult result =
            run_stepped(config, {load_stationary(w, tc.rate, tc.pack), multiply_moving(x, 1, false, tc.rate, tc.pack)});

        REQUIRE(result.psum.size() == 2);
        CHECK(result.psum[0].size() == 0);
        CHECK(bit_equal(result.psum[1], reference_mm(w, x)));

        const int k_used = static_cast<int>(ceil_div(tc.k, tc.pack));
        const std::int64_t ls_busy = tc.background ? tc.rate * ceil_div(tc.c, config.ls_cols_per_cycle) : k_used;
        REQUIRE(result.timing.size() == 2);
        CHECK(result.timing[0].start == 0);
        CHECK(result.timing[0].end == ls_busy);
        CHECK(result.timing[1].start == ls_busy);
        CHECK(result.timing[1].end == mm_end(ls_busy, tc.rate, tc.n, k_used, tc.c));
        CHECK(result.cycles == result.timing[1].end);
    }
}

TEST_CASE("Serial preload without fold overlap takes the SCALE-Sim per-fold cycle count", "[systolic_stepped]") {
    std::mt19937 rng(42);
    SteppedArrayConfig config;
    config.rows = 8;
    config.cols = 8;
    config.background_preload = false;
    config.fold_overlap = false;
    config.mm_init_latency = 0;

    struct Fold {
        int k, c;
        std::vector<int> ns;
    };
    const std::vector<Fold> folds = {{8, 8, {5, 3}}, {5, 3, {10}}, {2, 8, {1, 1, 1}}, {8, 1, {4, 2, 7}}, {1, 5, {6}}};

    std::vector<SteppedOp> ops;
    std::vector<Eigen::MatrixXf> expected;
    std::int64_t expected_cycles = 0;
    for (const Fold& fold : folds) {
        const Eigen::MatrixXf w = random_matrix(rng, fold.k, fold.c);
        ops.push_back(load_stationary(w));
        int t_total = 0;
        for (int n : fold.ns) {
            const Eigen::MatrixXf x = random_matrix(rng, fold.k, n);
            ops.push_back(multiply_moving(x, static_cast<int>(expected.size())));
            expected.push_back(reference_mm(w, x));
            t_total += n;
        }
        expected_cycles += 2 * fold.k + fold.c + t_total - 2;  // R = K_used (pack 1), C = C_used, T = vectors
    }

    const SteppedResult result = run_stepped(config, ops);
    CHECK(result.cycles == expected_cycles);
    REQUIRE(result.psum.size() == expected.size());
    for (std::size_t b = 0; b < expected.size(); ++b) {
        INFO("bank " << b);
        CHECK(bit_equal(result.psum[b], expected[b]));
    }
    // Each LS waits for the previous fold to drain; its MMs stream back to back.
    std::size_t i = 0;
    std::int64_t previous_end = 0;
    for (const Fold& fold : folds) {
        CHECK(ops[i].kind == SteppedOp::Kind::load_stationary);
        CHECK(result.timing[i].start == previous_end);
        CHECK(result.timing[i].end == previous_end + fold.k);
        std::int64_t s = previous_end + fold.k;
        ++i;
        for (int n : fold.ns) {
            CHECK(result.timing[i].start == s);
            CHECK(result.timing[i].end == mm_end(s, 1, n, fold.k, fold.c));
            previous_end = result.timing[i].end;
            s += n;
            ++i;
        }
    }
}

TEST_CASE("Background preload hides LoadStationary behind long MultiplyMoving streams", "[systolic_stepped]") {
    std::mt19937 rng(7);
    SteppedArrayConfig config;
    config.rows = 8;
    config.cols = 8;

    struct Case {
        int k, c, n, rate, pack, init, ls_rate;
        std::int64_t spacing;  // expected distance between consecutive MM starts
    };
    const std::vector<Case> cases = {
        {8, 8, 40, 1, 1, 64, 4, 40},   // N large: spacing rate*N, LS hidden
        {8, 8, 3, 1, 1, 64, 4, 8},     // N small: spacing min(64, C) = C
        {8, 6, 3, 1, 1, 5, 4, 5},      // spacing min(init, C) = 5
        {8, 8, 3, 1, 1, 2, 1, 8},      // LS bound: 1 column per cycle -> b = 8 > ii = 3
        {8, 8, 10, 4, 1, 64, 4, 40},   // fp32: ii = 4 * max(10, 8)
        {8, 8, 3, 4, 1, 64, 4, 32},    // fp32, N small: 4 * min(64, 8)
        {16, 8, 12, 1, 2, 64, 4, 12},  // fp8 double-row: K = 2 * rows
        {15, 7, 2, 1, 2, 64, 4, 7},    // odd K with pack 2, N small
        {32, 8, 20, 4, 4, 64, 4, 80},  // MX quad, fp32 rate
    };
    for (const Case& tc : cases) {
        INFO("K=" << tc.k << " C=" << tc.c << " N=" << tc.n << " rate=" << tc.rate << " pack=" << tc.pack
                  << " init=" << tc.init << " ls_cols_per_cycle=" << tc.ls_rate);
        config.mm_init_latency = tc.init;
        config.ls_cols_per_cycle = tc.ls_rate;
        const int pairs = 5;
        std::vector<SteppedOp> ops;
        std::vector<Eigen::MatrixXf> expected;
        for (int p = 0; p < pairs; ++p) {
            const Eigen::MatrixXf w = random_matrix(rng, tc.k, tc.c);
            const Eigen::MatrixXf x = random_matrix(rng, tc.k, tc.n);
            ops.push_back(load_stationary(w, tc.rate, tc.pack));
            ops.push_back(multiply_moving(x, p, false, tc.rate, tc.pack));
            expected.push_back(reference_mm(w, x));
        }
        const SteppedResult result = run_stepped(config, ops);

        const std::int64_t b = tc.rate * ceil_div(tc.c, tc.ls_rate);
        const int k_used = static_cast<int>(ceil_div(tc.k, tc.pack));
        CHECK(result.timing[1].start == b);
        for (int p = 1; p < pairs; ++p) {
            const auto ls = static_cast<std::size_t>(2 * p);
            CHECK(result.timing[ls + 1].start - result.timing[ls - 1].start == tc.spacing);
            // The LS issues as soon as the weight port is free and the previous MM has started its swap.
            CHECK(result.timing[ls].start == std::max(result.timing[ls - 2].end, result.timing[ls - 1].start));
        }
        for (int p = 0; p < pairs; ++p) {
            const auto mm = static_cast<std::size_t>(2 * p + 1);
            CHECK(result.timing[mm].end == mm_end(result.timing[mm].start, tc.rate, tc.n, k_used, tc.c));
            CHECK(bit_equal(result.psum[static_cast<std::size_t>(p)], expected[static_cast<std::size_t>(p)]));
        }
        CHECK(result.cycles == result.timing.back().end);
    }
}

TEST_CASE("Background preload without fold overlap waits for the array to drain before a new stationary",
          "[systolic_stepped]") {
    std::mt19937 rng(11);
    SteppedArrayConfig config;
    config.rows = 8;
    config.cols = 8;
    config.fold_overlap = false;
    std::vector<SteppedOp> ops;
    for (int p = 0; p < 3; ++p) {
        ops.push_back(load_stationary(random_matrix(rng, 8, 8)));
        ops.push_back(multiply_moving(random_matrix(rng, 8, 4), p));
        ops.push_back(multiply_moving(random_matrix(rng, 8, 4), p + 3));  // reuses the stationary: no drain
    }
    const SteppedResult result = run_stepped(config, ops);
    for (int p = 1; p < 3; ++p) {
        const auto first = static_cast<std::size_t>(3 * p + 1);
        CHECK(result.timing[first].start == result.timing[first - 2].end);
        CHECK(result.timing[first + 1].start == result.timing[first].start + 8);  // ii = max(4, min(64, 8))
    }
    CHECK(result.timing[2].start == result.timing[1].start + 8);
}

TEST_CASE("Accumulating several MultiplyMoving ops into one bank yields the sequential sum", "[systolic_stepped]") {
    std::mt19937 rng(2024);

    SECTION("K-tiled folds with a short last fold accumulate in program order") {
        SteppedArrayConfig config;
        config.rows = 16;
        config.cols = 16;
        const int k = 2 * 16 + 3;
        const int c = 16;
        const int n = 20;
        const Eigen::MatrixXf w = random_matrix(rng, k, c);
        const Eigen::MatrixXf x = random_matrix(rng, k, n);
        std::vector<SteppedOp> ops;
        Eigen::MatrixXf expected;
        for (int k0 = 0; k0 < k; k0 += 16) {
            const int kk = std::min(16, k - k0);
            ops.push_back(load_stationary(w.middleRows(k0, kk)));
            ops.push_back(multiply_moving(x.middleRows(k0, kk), 2, k0 > 0));
            const Eigen::MatrixXf part = reference_mm(w.middleRows(k0, kk), x.middleRows(k0, kk));
            expected = k0 == 0 ? part : Eigen::MatrixXf(expected + part);
        }
        const SteppedResult result = run_stepped(config, ops);
        REQUIRE(result.psum.size() == 3);
        CHECK(bit_equal(result.psum[2], expected));
        CHECK(result.psum[2].isApprox(w.transpose() * x, 1e-4f));
    }

    SECTION("Reusing one stationary with accumulating moving blocks") {
        SteppedArrayConfig config;
        config.rows = 8;
        config.cols = 8;
        const Eigen::MatrixXf w = random_matrix(rng, 8, 5);
        std::vector<SteppedOp> ops{load_stationary(w)};
        Eigen::MatrixXf expected = Eigen::MatrixXf::Zero(5, 6);
        for (int i = 0; i < 4; ++i) {
            const Eigen::MatrixXf x = random_matrix(rng, 8, 6);
            ops.push_back(multiply_moving(x, 0, i > 0));
            expected = i == 0 ? reference_mm(w, x) : Eigen::MatrixXf(expected + reference_mm(w, x));
        }
        const SteppedResult result = run_stepped(config, ops);
        CHECK(bit_equal(result.psum[0], expected));
        // Reusing MMs stream back to back behind the moving port: ii = max(6, min(64, 5)) = 6.
        for (std::size_t i = 2; i < ops.size(); ++i) {
            CHECK(result.timing[i].start - result.timing[i - 1].start == 6);
        }
    }

    SECTION("Accumulate as the first write of a bank starts from zero") {
        SteppedArrayConfig config;
        const Eigen::MatrixXf w = random_matrix(rng, 3, 2);
        const Eigen::MatrixXf x = random_matrix(rng, 3, 4);
        const SteppedResult result = run_stepped(config, {load_stationary(w), multiply_moving(x, 0, true)});
        CHECK(bit_equal(result.psum[0], reference_mm(w, x)));
    }
}

TEST_CASE("A 16x16 array with twenty mixed ops runs and matches the reference", "[systolic_stepped]") {
    std::mt19937 rng(99);
    for (const bool background : {true, false}) {
        for (const bool overlap : {true, false}) {
            SteppedArrayConfig config;
            config.rows = 16;
            config.cols = 16;
            config.background_preload = background;
            config.fold_overlap = overlap;
            std::vector<SteppedOp> ops;
            std::vector<Eigen::MatrixXf> expected;
            for (int f = 0; f < 7; ++f) {
                const int pack = f % 3 == 2 ? 2 : 1;
                const int rate = f % 4 == 3 ? 4 : 1;
                const int k = pack * (16 - f);
                const int c = 16 - 2 * f;
                const Eigen::MatrixXf w = random_matrix(rng, k, c);
                ops.push_back(load_stationary(w, rate, pack));
                for (int m = 0; m < 2; ++m) {
                    const Eigen::MatrixXf x = random_matrix(rng, k, 3 + 9 * m + f);
                    ops.push_back(multiply_moving(x, static_cast<int>(expected.size()), false, rate, pack));
                    expected.push_back(reference_mm(w, x));
                }
            }
            INFO("background=" << background << " overlap=" << overlap);
            const SteppedResult result = run_stepped(config, ops);
            REQUIRE(result.psum.size() == expected.size());
            for (std::size_t b = 0; b < expected.size(); ++b) CHECK(bit_equal(result.psum[b], expected[b]));
        }
    }
}

TEST_CASE("Issuing a MultiplyMoving before its weights are in place is caught by the hazard check",
          "[systolic_stepped]") {
    std::mt19937 rng(5);
    const Eigen::MatrixXf w = random_matrix(rng, 4, 4);
    const Eigen::MatrixXf x = random_matrix(rng, 4, 4);
    for (const bool background : {true, false}) {
        SteppedArrayConfig config;
        config.rows = 4;
        config.cols = 4;
        config.background_preload = background;
        INFO("background=" << background);
        CHECK_NOTHROW(run_stepped(config, {load_stationary(w), multiply_moving(x, 0)}));
        config.interlock_slack = 1;
        CHECK_THROWS_AS(run_stepped(config, {load_stationary(w), multiply_moving(x, 0)}), std::logic_error);
    }
}

TEST_CASE("The PSUM write-order interlock keeps a shallow fold from overtaking a deep one into the same bank",
          "[systolic_stepped]") {
    // A deep fold writes its results late; the next (shallow, accumulating) fold into the same bank would be
    // allowed by the port interlocks to start after ii = max(N, min(64, C)) = 2 cycles, and its results would
    // leave the array first. The write-order interlock delays it to s_prev + K_used(prev) - K_used + 1.
    std::mt19937 rng(3);
    SteppedArrayConfig config;
    config.rows = 16;
    config.cols = 16;
    const Eigen::MatrixXf w0 = random_matrix(rng, 16, 2);
    const Eigen::MatrixXf x0 = random_matrix(rng, 16, 1);
    const Eigen::MatrixXf w1 = random_matrix(rng, 1, 2);
    const Eigen::MatrixXf x1 = random_matrix(rng, 1, 1);
    const std::vector<SteppedOp> ops = {load_stationary(w0), multiply_moving(x0, 0, false), load_stationary(w1),
                                        multiply_moving(x1, 0, true)};
    const Eigen::MatrixXf expected = reference_mm(w0, x0) + reference_mm(w1, x1);

    SECTION("With the interlock (default) the writes land in program order") {
        const SteppedResult result = run_stepped(config, ops);
        CHECK(result.timing[3].start == result.timing[1].start + 16 - 1 + 1);
        CHECK(result.timing[3].end > result.timing[1].end);
        CHECK(bit_equal(result.psum[0], expected));
        // Into another bank the interlock does not apply: only the port interlocks (LS busy 1, ii 2) remain.
        std::vector<SteppedOp> other_bank = ops;
        other_bank[3].psum_bank = 1;
        other_bank[3].accumulate = false;
        const SteppedResult free = run_stepped(config, other_bank);
        CHECK(free.timing[3].start == free.timing[1].start + 2);
        CHECK(free.timing[3].end < free.timing[1].end);
    }
    SECTION("Without the interlock the write-order self-check fires") {
        config.psum_order_interlock = SteppedArrayConfig::PsumOrderInterlock::none;
        CHECK_THROWS_AS(run_stepped(config, ops), std::logic_error);
        config.check_psum_order = false;  // writes land in arrival order: the deep fold's result comes last
        const SteppedResult result = run_stepped(config, ops);
        CHECK(result.timing[3].end < result.timing[1].end);
        CHECK_FALSE(bit_equal(result.psum[0], expected));
        config.fold_overlap = false;  // draining between folds also removes the hazard
        config.check_psum_order = true;
        CHECK_NOTHROW(run_stepped(config, ops));
    }
}

TEST_CASE("The per-bank write-order interlock also orders behind a non-adjacent or a slower earlier MM",
          "[systolic_stepped]") {
    using Interlock = SteppedArrayConfig::PsumOrderInterlock;
    std::mt19937 rng(8);
    SteppedArrayConfig config;
    config.rows = 16;
    config.cols = 4;
    config.mm_init_latency = 0;

    SECTION("Another bank's MM in between") {
        // MM a (K_used 16) first writes bank 0 at 1 + 15 = 16; MM c (K_used 1) into bank 0 follows MM b
        // (bank 1), so the previous-MM rule does not hold it back: it would write bank 0 at 3.
        const Eigen::MatrixXf w0 = random_matrix(rng, 16, 1);
        const Eigen::MatrixXf w1 = random_matrix(rng, 1, 1);
        const Eigen::MatrixXf xa = random_matrix(rng, 16, 1);
        const Eigen::MatrixXf xc = random_matrix(rng, 1, 1);
        const std::vector<SteppedOp> ops = {load_stationary(w0), multiply_moving(xa, 0),
                                            multiply_moving(random_matrix(rng, 16, 1), 1), load_stationary(w1),
                                            multiply_moving(xc, 0, true)};
        config.psum_order_interlock = Interlock::previous_mm;
        CHECK_THROWS_AS(run_stepped(config, ops), std::logic_error);
        config.psum_order_interlock = Interlock::per_bank;
        const SteppedResult result = run_stepped(config, ops);
        CHECK(result.timing[4].start == result.timing[1].start + 16 - 1 + 1);
        CHECK(bit_equal(result.psum[0], Eigen::MatrixXf(reference_mm(w0, xa) + reference_mm(w1, xc))));
    }
    SECTION("A slower (FP32-rate) MM before a BF16-rate one") {
        // MM a (rate 4, K_used 16) writes (0, 1) at 4 + 4 + 15 = 23; MM b (rate 1, K_used 1) at 20 + 1 = 21
        // under the first-result rule (s_b = 4 + 16 - 1 + 1 = 20). Exact: s_b >= 20 + (4 - 1) * (2 - 1).
        const Eigen::MatrixXf w0 = random_matrix(rng, 16, 1);
        const Eigen::MatrixXf w1 = random_matrix(rng, 1, 1);
        const Eigen::MatrixXf xa = random_matrix(rng, 16, 2);
        const Eigen::MatrixXf xb = random_matrix(rng, 1, 2);
        const std::vector<SteppedOp> ops = {load_stationary(w0, 4), multiply_moving(xa, 0, false, 4),
                                            load_stationary(w1), multiply_moving(xb, 0, true)};
        config.psum_order_interlock = Interlock::previous_mm;
        CHECK_THROWS_AS(run_stepped(config, ops), std::logic_error);
        config.psum_order_interlock = Interlock::per_bank;
        const SteppedResult result = run_stepped(config, ops);
        CHECK(result.timing[1].start == 4);
        CHECK(result.timing[3].start == 23);
        CHECK(bit_equal(result.psum[0], Eigen::MatrixXf(reference_mm(w0, xa) + reference_mm(w1, xb))));
    }
    SECTION("Equal rates and the preceding MM into the bank: both rules agree") {
        const std::vector<SteppedOp> ops = {
            load_stationary(random_matrix(rng, 16, 2)), multiply_moving(random_matrix(rng, 16, 3), 0),
            load_stationary(random_matrix(rng, 2, 2)), multiply_moving(random_matrix(rng, 2, 3), 0, true)};
        config.psum_order_interlock = Interlock::previous_mm;
        const SteppedResult previous = run_stepped(config, ops);
        config.psum_order_interlock = Interlock::per_bank;
        const SteppedResult per_bank = run_stepped(config, ops);
        CHECK(previous.timing[3].start == previous.timing[1].start + 16 - 2 + 1);
        CHECK(per_bank.timing[3].start == previous.timing[3].start);
    }
}

TEST_CASE("Malformed programs are rejected with invalid_argument", "[systolic_stepped]") {
    SteppedArrayConfig config;
    config.rows = 4;
    config.cols = 4;
    const Eigen::MatrixXf w = Eigen::MatrixXf::Ones(4, 4);
    const Eigen::MatrixXf x = Eigen::MatrixXf::Ones(4, 3);

    CHECK_NOTHROW(run_stepped(config, {load_stationary(w), multiply_moving(x, 0)}));
    CHECK_THROWS_AS(run_stepped(config, {multiply_moving(x, 0)}), std::invalid_argument);
    CHECK_THROWS_AS(run_stepped(config, {load_stationary(Eigen::MatrixXf::Ones(5, 4))}), std::invalid_argument);
    CHECK_THROWS_AS(run_stepped(config, {load_stationary(Eigen::MatrixXf::Ones(9, 4), 1, 2)}), std::invalid_argument);
    CHECK_NOTHROW(run_stepped(config, {load_stationary(Eigen::MatrixXf::Ones(8, 4), 1, 2)}));
    CHECK_THROWS_AS(run_stepped(config, {load_stationary(Eigen::MatrixXf::Ones(4, 5))}), std::invalid_argument);
    CHECK_THROWS_AS(run_stepped(config, {load_stationary(w, 2)}), std::invalid_argument);
    CHECK_THROWS_AS(run_stepped(config, {load_stationary(w), multiply_moving(x, 0, false, 3)}), std::invalid_argument);
    CHECK_THROWS_AS(run_stepped(config, {load_stationary(w, 1, 3)}), std::invalid_argument);
    CHECK_THROWS_AS(run_stepped(config, {load_stationary(Eigen::MatrixXf())}), std::invalid_argument);
    CHECK_THROWS_AS(run_stepped(config, {load_stationary(w), multiply_moving(Eigen::MatrixXf(), 0)}),
                    std::invalid_argument);
    // MM K must match its stationary's K; pack too.
    CHECK_THROWS_AS(run_stepped(config, {load_stationary(w), multiply_moving(Eigen::MatrixXf::Ones(3, 3), 0)}),
                    std::invalid_argument);
    CHECK_THROWS_AS(run_stepped(config, {load_stationary(w), multiply_moving(x, 0, false, 1, 2)}),
                    std::invalid_argument);
    CHECK_THROWS_AS(run_stepped(config, {load_stationary(w), multiply_moving(x, -1)}), std::invalid_argument);
    // Accumulating into a bank of another shape.
    CHECK_THROWS_AS(run_stepped(config, {load_stationary(w), multiply_moving(x, 0),
                                         multiply_moving(Eigen::MatrixXf::Ones(4, 2), 0, true)}),
                    std::invalid_argument);
    SteppedArrayConfig bad = config;
    bad.rows = 0;
    CHECK_THROWS_AS(run_stepped(bad, {load_stationary(w)}), std::invalid_argument);
}
