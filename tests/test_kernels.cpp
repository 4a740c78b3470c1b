// End-to-end kernel simulations. Each simulation runs in a forked child (one SystemC elaboration per
// process) and returns its JSON result.
#include <random>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/isolated.h"
#include "trnsim/hw/chip.h"
#include "trnsim/report/kernel_report.h"
#include "trnsim/runtime/kernel_runner.h"

using namespace trnsim;
using nlohmann::json;

namespace {

struct Run {
    std::string chip = "trn2";
    std::string op = "gemm";
    std::int64_t m = 0, k = 0, n = 0, rows = 0, cols = 0;
    DType dtype = DType::bf16;
    bool functional = false;
    std::vector<std::string> overrides;
};

runtime::KernelOptions options_of(const Run& run) {
    runtime::KernelOptions o;
    o.request.op = run.op;
    o.request.m = run.m;
    o.request.k = run.k;
    o.request.n = run.n;
    o.request.rows = run.rows;
    o.request.cols = run.cols;
    o.request.dtype = run.dtype;
    o.functional = run.functional;
    return o;
}

json simulate(const Run& run) {
    const std::string out = testing::run_isolated([&] {
        const runtime::KernelOptions o = options_of(run);
        const Config c = hw::resolve_chip_config(run.chip, {}, run.overrides);
        return report::to_json(runtime::run_kernel(o, c)).dump();
    });
    INFO(out.substr(0, 300));
    REQUIRE(out.rfind("error:", 0) != 0);
    return json::parse(out);
}

Run gemm(const std::string& chip, std::int64_t m, std::int64_t k, std::int64_t n, DType dtype = DType::bf16) {
    Run r;
    r.chip = chip;
    r.m = m;
    r.k = k;
    r.n = n;
    r.dtype = dtype;
    return r;
}

// Memory and DMA that never stall the tensor engine ("ideal memory" for the textbook comparison).
const std::vector<std::string> k_unlimited_memory = {
    "chip.memory.model=ideal",           "chip.memory.bandwidth=1000TB/s",   "chip.core.dma.engine_bandwidth=100TB/s",
    "chip.core.dma.transfer_latency=0s", "chip.core.dma.descriptor_cost=0s", "chip.memory.ideal.latency=0s"};

const std::vector<std::string> k_textbook = {"chip.core.tensor_engine.preload=serial",
                                             "chip.core.tensor_engine.fold_overlap=none",
                                             "chip.core.tensor_engine.mm_init_latency=0"};

std::int64_t fold_formula(std::int64_t m, std::int64_t k, std::int64_t n, int rows, int cols) {
    // SCALE-Sim WS: weights (K x N) stationary, M streamed; per fold 2R + C + T - 2.
    std::int64_t total = 0;
    for (std::int64_t k0 = 0; k0 < k; k0 += rows)
        for (std::int64_t n0 = 0; n0 < n; n0 += cols) {
            const std::int64_t r = std::min<std::int64_t>(rows, k - k0), c = std::min<std::int64_t>(cols, n - n0);
            total += 2 * r + c + m - 2;
        }
    return total;
}

}  // namespace

TEST_CASE("textbook mode with unlimited memory reproduces the SCALE-Sim fold formula", "[kernel][gemm]") {
    for (auto shape : {std::array<std::int64_t, 3>{1024, 4096, 4096}, {300, 200, 130}, {64, 128, 128}}) {
        Run r = gemm("trn2", shape[0], shape[1], shape[2]);
        r.overrides = k_unlimited_memory;
        r.overrides.insert(r.overrides.end(), k_textbook.begin(), k_textbook.end());
        const json j = simulate(r);
        INFO(shape[0] << "x" << shape[1] << "x" << shape[2]);
        CHECK(j["tensor_engine"]["cycles"].get<std::int64_t>() == fold_formula(shape[0], shape[1], shape[2], 128, 128));
    }
}

TEST_CASE("achieved TFLOPS never exceed the peak, and utilizations stay within 0..1", "[kernel][gemm]") {
    std::mt19937 rng(7);
    std::uniform_int_distribution<std::int64_t> dim(1, 1500);
    const char* chips[] = {"trn1", "trn2", "trn3"};
    const DType dtypes[] = {DType::bf16, DType::fp8_e4m3, DType::fp32};
    for (int i = 0; i < 18; ++i) {
        Run r = gemm(chips[i % 3], dim(rng), dim(rng), dim(rng), dtypes[(i / 3) % 3]);
        if (i % 4 == 3) r.overrides = k_unlimited_memory;
        const json j = simulate(r);
        INFO(r.chip << " " << r.m << "x" << r.k << "x" << r.n << " " << dtype_name(r.dtype));
        CHECK(j["achieved_tflops"].get<double>() <= j["peak_tflops"].get<double>());
        CHECK(j["achieved_tflops"].get<double>() > 0);
        for (const auto& [engine, u] : j["utilization"].items()) {
            INFO(engine);
            CHECK(u.get<double>() >= 0.0);
            CHECK(u.get<double>() <= 1.0);
        }
        // The tensor engine did exactly the GEMM's multiply-accumulates.
        CHECK(j["tensor_engine"]["macs"].get<double>() == Approx(j["flops"].get<double>() / 2).epsilon(0));
    }
}

TEST_CASE("HBM bytes equal what the program's DMAs move and what the tiling plan needs", "[kernel][gemm]") {
    for (auto shape : {std::array<std::int64_t, 3>{512, 512, 512}, {1000, 3000, 700}, {4096, 2048, 8192}}) {
        const json j = simulate(gemm("trn1", shape[0], shape[1], shape[2]));
        const auto& plan = j["plan"];
        INFO(shape[0] << "x" << shape[1] << "x" << shape[2]);
        CHECK(j["hbm"]["read_bytes"] == j["dma"]["program_read_bytes"]);
        CHECK(j["hbm"]["write_bytes"] == j["dma"]["program_write_bytes"]);
        CHECK(j["hbm"]["read_bytes"] == plan["expected_read_bytes"]);
        CHECK(j["hbm"]["write_bytes"].get<std::int64_t>() == shape[0] * shape[2] * 2);
        // Every operand byte is read at least once; the stationary operand once per moving block.
        const std::int64_t lhs = shape[0] * shape[1] * 2, rhs = shape[1] * shape[2] * 2;
        CHECK(j["hbm"]["read_bytes"].get<std::int64_t>() == lhs + rhs * plan["moving_blocks"].get<std::int64_t>());
    }
}

TEST_CASE("FP8 on trn2 is about twice BF16 on a large GEMM, FP32 about a quarter", "[kernel][gemm]") {
    const double bf16 = simulate(gemm("trn2", 2048, 4096, 2048, DType::bf16))["time_s"];
    const double fp8 = simulate(gemm("trn2", 2048, 4096, 2048, DType::fp8_e4m3))["time_s"];
    const double fp32 = simulate(gemm("trn2", 2048, 4096, 2048, DType::fp32))["time_s"];
    CHECK(bf16 / fp8 == Approx(2.0).epsilon(0.1));
    CHECK(fp32 / bf16 == Approx(4.0).epsilon(0.1));
}

TEST_CASE("MX quad mode on trn3 is about four times BF16", "[kernel][gemm]") {
    const double bf16 = simulate(gemm("trn3", 2048, 8192, 2048, DType::bf16))["time_s"];
    const double fp8 = simulate(gemm("trn3", 2048, 8192, 2048, DType::fp8_e4m3))["time_s"];
    CHECK(bf16 / fp8 == Approx(4.0).epsilon(0.15));
    // MXFP8 comes in E4M3 and E5M2 (NC-v4); same bytes, same packing, same time.
    const double e5m2 = simulate(gemm("trn3", 2048, 8192, 2048, DType::fp8_e5m2))["time_s"];
    CHECK(e5m2 == fp8);
}

TEST_CASE("the tiled GEMM computes the product for every dataflow and dtype", "[kernel][gemm][functional]") {
    struct Case {
        std::string chip;
        DType dtype;
        std::string dataflow;
        double tolerance;
    };
    // Inputs are already in their dtype, so the error is FP32 accumulation plus the output rounding
    // (BF16 output: 2^-9 relative; FP32: accumulation only).
    const Case cases[] = {{"trn2", DType::bf16, "ws", 4e-3},     {"trn2", DType::bf16, "is", 4e-3},
                          {"trn2", DType::bf16, "os", 4e-3},     {"trn2", DType::fp32, "ws", 1e-5},
                          {"trn2", DType::fp8_e4m3, "ws", 4e-3}, {"trn3", DType::fp8_e4m3, "is", 4e-3},
                          {"trn1", DType::fp8_e5m2, "ws", 4e-3}};
    for (const auto& c : cases) {
        Run r = gemm(c.chip, 200, 700, 300, c.dtype);
        r.functional = true;
        r.overrides = {"chip.core.tensor_engine.dataflow=" + c.dataflow};
        const json j = simulate(r);
        INFO(c.chip << " " << dtype_name(c.dtype) << " " << c.dataflow);
        CHECK(j["functional"]["max_rel_error"].get<double>() < c.tolerance);
    }
}

TEST_CASE("row-wise kernels compute their functions", "[kernel][functional]") {
    for (const std::string op : {"layernorm", "rmsnorm", "softmax", "gelu", "silu", "transpose"}) {
        Run r;
        r.op = op;
        r.rows = 300;
        r.cols = 700;
        r.functional = true;
        const json j = simulate(r);
        INFO(op);
        // BF16 output rounding is 2^-9 of the largest value; transpose moves values exactly.
        CHECK(j["functional"]["max_rel_error"].get<double>() < (op == "transpose" ? 1e-30 : 4e-3));
        CHECK(j["hbm"]["read_bytes"] == j["dma"]["program_read_bytes"]);
        CHECK(j["hbm"]["write_bytes"].get<std::int64_t>() == 300 * 700 * 2);
    }
}

TEST_CASE("row-wise kernels use the engines their lowering names", "[kernel]") {
    Run r;
    r.op = "layernorm";
    r.rows = 1024;
    r.cols = 2048;
    const json j = simulate(r);
    CHECK(j["utilization"]["vector"].get<double>() > 0);
    CHECK(j["utilization"]["scalar"].get<double>() > 0);
    CHECK(j["utilization"]["gpsimd"].get<double>() > 0);
    CHECK(j["utilization"]["tensor"].get<double>() == 0);
}

TEST_CASE("the same kernel simulated twice gives the same result", "[kernel]") {
    json a = simulate(gemm("trn2", 1000, 1000, 1000));
    json b = simulate(gemm("trn2", 1000, 1000, 1000));
    for (json* j : {&a, &b}) {
        (*j)["sim"].erase("wall_s");
        (*j)["sim"].erase("peak_rss_bytes");
    }
    CHECK(a.dump() == b.dump());
}

TEST_CASE("the trace holds one interval per instruction, inside the kernel's time", "[kernel][trace]") {
    const std::string out = testing::run_isolated([] {
        runtime::KernelOptions o;
        o.request.op = "rmsnorm";
        o.request.rows = 512;
        o.request.cols = 1024;
        o.trace = true;
        const auto r = runtime::run_kernel(o, hw::resolve_chip_config("trn2", {}, {}));
        return json{{"trace", report::to_chrome_trace(r)}, {"result", report::to_json(r)}}.dump();
    });
    const json j = json::parse(out);
    std::uint64_t instructions = 0;
    for (const auto& [name, n] : j["result"]["instructions"].items()) instructions += n.get<std::uint64_t>();
    std::uint64_t intervals = 0;
    const double end_us = j["result"]["time_s"].get<double>() * 1e6;
    for (const auto& e : j["trace"]["traceEvents"]) {
        if (e["ph"] != "X") continue;
        ++intervals;
        CHECK(e["dur"].get<double>() >= 0);
        CHECK(e["ts"].get<double>() + e["dur"].get<double>() <= end_us * (1 + 1e-12));
    }
    CHECK(intervals == instructions);
}
