// End-to-end kernel simulations. Each simulation runs in a forked child (one SystemC elaboration per
// process) and returns its JSON result.
#include <random>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/isolated.h"
#include "trnsim/hw/chip.h"
#include "trnsim/hw/functional.h"
#include "trnsim/lowering/kernel.h"
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
    bool causal = false;
    std::int64_t q_offset = 0;
    bool dropout = false;
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
    o.request.causal = run.causal;
    o.request.q_offset = run.q_offset;
    o.request.dropout = run.dropout;
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

namespace {

Run flash(const std::string& op, std::int64_t queries, std::int64_t d, std::int64_t keys, bool causal,
          std::int64_t q_offset = 0, const std::string& chip = "trn2") {
    Run r;
    r.chip = chip;
    r.op = op;
    r.m = queries;
    r.k = d;
    r.n = keys;
    r.causal = causal;
    r.q_offset = q_offset;
    return r;
}

// Closed forms of what the flash kernels compute: 128-query tiles, 512-key blocks, a block skipped when the
// causal mask hides all of it. Forward tensor-engine MACs per block (q rows, c keys): S = Q K^T q c d, the
// transposes of P q c q (MultiplyMoving an identity), P V q c d; backward: S, dP, dV, dK, dQ q c d each and
// the transposes of dS q c q.
struct FlashForm {
    double blocks = 0, masked = 0, fwd_macs = 0, bwd_macs = 0, scores = 0;
};
FlashForm flash_form(std::int64_t sq, std::int64_t d, std::int64_t sk, bool causal, std::int64_t off) {
    FlashForm f;
    for (std::int64_t q0 = 0; q0 < sq; q0 += 128) {
        const double q = static_cast<double>(std::min<std::int64_t>(128, sq - q0));
        for (std::int64_t k0 = 0; k0 < sk; k0 += 512) {
            const std::int64_t c = std::min<std::int64_t>(512, sk - k0);
            if (causal && k0 > off + q0 + static_cast<std::int64_t>(q) - 1) continue;
            f.blocks += 1;
            if (causal && k0 + c - 1 > off + q0) f.masked += 1;
            f.fwd_macs += 2 * q * c * d + q * c * q;
            f.bwd_macs += 5 * q * c * d + q * c * q;
        }
    }
    for (std::int64_t i = 0; i < sq; ++i) f.scores += causal ? std::min(sk, off + i + 1) : sk;
    return f;
}

}  // namespace

TEST_CASE("flash attention computes softmax attention and its gradients", "[kernel][flash][functional]") {
    struct Case {
        std::int64_t queries, d, keys;
        bool causal;
        std::int64_t q_offset;
        std::string chip;
    };
    // Whole and partial query tiles and key blocks, one key block per tile (the pipeline's shortest tiles),
    // a query window at an offset, and every chip generation.
    const Case cases[] = {{256, 128, 256, false, 0, "trn2"},
                          {384, 128, 384, true, 0, "trn2"},
                          {200, 64, 700, true, 500, "trn2"},
                          {384, 128, 1100, false, 0, "trn1"},
                          {1000, 96, 1000, true, 0, "trn3"}};
    for (const auto& c : cases) {
        for (const std::string op : {"flash_fwd", "flash_bwd"}) {
            Run r = flash(op, c.queries, c.d, c.keys, c.causal, c.q_offset, c.chip);
            r.functional = true;
            const json j = simulate(r);
            INFO(op << " " << c.queries << "x" << c.d << "x" << c.keys << " causal " << c.causal << " offset "
                    << c.q_offset << " " << c.chip);
            // Against FP64 (the backward against the exact gradients of softmax attention): P, dS and the
            // outputs are rounded to BF16 (2^-9 relative), the row statistics kept in FP32.
            CHECK(j["functional"]["max_rel_error"].get<double>() < 6e-3);
        }
    }
}

TEST_CASE("on NeuronCore-v4 the flash forward takes exp on the Vector engine (exponential), and is no slower",
          "[kernel][flash]") {
    // Instructions of the lowered forward per engine: exponential and Scalar-engine exp.
    const auto mix = [](const std::string& chip, const std::vector<std::string>& overrides) {
        const Config c = hw::resolve_chip_config(chip, {}, overrides);
        lowering::KernelRequest q;
        q.op = "flash_fwd";
        q.m = 2048;
        q.k = 128;
        q.n = 2048;
        q.causal = true;
        const auto k = lowering::lower_kernel(q, hw::ChipSpec::from_config(c));
        std::map<std::string, int> n;
        for (const auto e : {hw::EngineKind::vector, hw::EngineKind::scalar, hw::EngineKind::gpsimd})
            for (const auto& ins : k.program.stream(e)) {
                if (ins.op == hw::Op::exponential) ++n[std::string("exponential.") + hw::engine_name(e)];
                if (ins.op == hw::Op::activation && ins.func == hw::ActFunc::exp)
                    ++n[std::string("exp.") + hw::engine_name(e)];
            }
        n["blocks"] = static_cast<int>(k.plan.at("blocks"));
        n["q_tiles"] = 2048 / 128;
        return n;
    };
    // trn3: one exponential per block for P and one per block after a tile's first for the rescale factor.
    auto v4 = mix("trn3", {});
    CHECK(v4["exponential.vector"] == 2 * v4["blocks"] - v4["q_tiles"]);
    CHECK(v4["exp.scalar"] == 0);
    // Without the instruction (NC-v2/v3, or trn3 with fast_exp 0), the Scalar engine's activation does it.
    for (const auto& [chip, overrides] : std::vector<std::pair<std::string, std::vector<std::string>>>{
             {"trn2", {}}, {"trn3", {"chip.core.vector_engine.fast_exp=0"}}}) {
        auto n = mix(chip, overrides);
        CHECK(n["exponential.vector"] == 0);
        CHECK(n["exp.scalar"] == 2 * n["blocks"] - n["q_tiles"]);
    }
    Run fast = flash("flash_fwd", 2048, 128, 2048, true, 0, "trn3");
    Run slow = fast;
    slow.overrides = {"chip.core.vector_engine.fast_exp=0"};
    CHECK(simulate(fast)["time_s"].get<double>() < simulate(slow)["time_s"].get<double>());
    // The same softmax: against FP64 within BF16 rounding, at a size where the variant is chosen.
    fast.functional = true;
    CHECK(simulate(fast)["functional"]["max_rel_error"].get<double>() < 6e-3);
}

TEST_CASE("attention dropout: a Vector-engine dropout per block in the flash forward, two in the backward",
          "[kernel][flash]") {
    // nki.isa.dropout runs on the Vector engine, max(MIN_II, N) cycles [NKI-ISA]: the forward's evacuation of
    // P^T from PSUM becomes it (every block's, on the Vector engine), the backward masks dP and P per block.
    const auto lowered = [](const std::string& chip, const std::string& op, bool dropout) {
        lowering::KernelRequest q;
        q.op = op;
        q.m = 2048;
        q.k = 128;
        q.n = 2048;
        q.causal = true;
        q.dropout = dropout;
        return lowering::lower_kernel(q, hw::ChipSpec::from_config(hw::resolve_chip_config(chip, {}, {})));
    };
    const auto count = [](const lowering::LoweredKernel& k, hw::EngineKind e, hw::Op op) {
        int n = 0;
        for (const auto& ins : k.program.stream(e)) n += ins.op == op ? 1 : 0;
        return n;
    };
    for (const std::string chip : {"trn1", "trn2", "trn3"}) {
        INFO(chip);
        for (const auto& [op, per_block] : {std::pair<std::string, int>{"flash_fwd", 1}, {"flash_bwd", 2}}) {
            INFO(op);
            const auto with = lowered(chip, op, true), without = lowered(chip, op, false);
            const int blocks = static_cast<int>(with.plan.at("blocks"));
            CHECK(count(with, hw::EngineKind::vector, hw::Op::dropout) == per_block * blocks);
            for (const auto e : {hw::EngineKind::scalar, hw::EngineKind::gpsimd, hw::EngineKind::tensor})
                CHECK(count(with, e, hw::Op::dropout) == 0);
            CHECK(count(without, hw::EngineKind::vector, hw::Op::dropout) == 0);
            CHECK(with.flops == without.flops);  // the graph counts dropout's FLOPs (training op), not the kernel
        }
    }
    // The same matrix work, more Vector-engine work, never faster; on trn1 (one element per cycle on the
    // Vector engine) the forward is bound by it.
    for (const std::string op : {"flash_fwd", "flash_bwd"}) {
        Run a = flash(op, 2048, 128, 2048, true, 0, "trn1");
        Run b = a;
        b.dropout = true;
        const json ja = simulate(a), jb = simulate(b);
        CHECK(jb["tensor_engine"]["macs"] == ja["tensor_engine"]["macs"]);
        const double ta = ja["time_s"], tb = jb["time_s"];
        CHECK(tb > ta);
        CHECK(jb["utilization"]["vector"].get<double>() * tb > ja["utilization"]["vector"].get<double>() * ta);
    }
    // The instruction's values: each element zeroed with the given probability, the others kept.
    hw::Program program;
    for (const char* name : {"in", "out"}) {
        hw::BufferDecl decl;
        decl.name = name;
        decl.dtype = DType::fp32;
        decl.rows = 128;
        decl.cols = 512;
        program.buffers.push_back(decl);
    }
    hw::FunctionalState state(program);
    for (std::size_t i = 0; i < state.buffer(0).size(); ++i) state.buffer(0)[i] = 1.0f + static_cast<float>(i);
    hw::Instruction dr;
    dr.op = hw::Op::dropout;
    dr.src0 = {0, 0, 128, 0, 512};
    dr.dst = {1, 0, 128, 0, 512};
    dr.scalar0.value = 0.1f;
    state.execute(dr);
    double zeros = 0, changed = 0;
    for (std::size_t i = 0; i < state.buffer(1).size(); ++i) {
        const float v = state.buffer(1)[i];
        zeros += v == 0.0f ? 1 : 0;
        changed += v != 0.0f && v != state.buffer(0)[i] ? 1 : 0;
    }
    CHECK(zeros / (128.0 * 512.0) == Approx(0.1).margin(0.005));
    CHECK(changed == 0);
}

TEST_CASE("flash attention skips the blocks the causal mask hides, and masks the ones it crosses", "[kernel][flash]") {
    for (const auto& [sq, d, sk, causal, off] :
         {std::tuple<std::int64_t, std::int64_t, std::int64_t, bool, std::int64_t>{2048, 128, 2048, true, 0},
          {2048, 128, 2048, false, 0},
          {1000, 64, 1700, true, 700}}) {
        const FlashForm f = flash_form(sq, d, sk, causal, off);
        const json fwd = simulate(flash("flash_fwd", sq, d, sk, causal, off));
        const json bwd = simulate(flash("flash_bwd", sq, d, sk, causal, off));
        INFO(sq << "x" << d << "x" << sk << " causal " << causal);
        CHECK(fwd["plan"]["blocks"].get<double>() == f.blocks);
        CHECK(fwd["plan"]["blocks_masked"].get<double>() == f.masked);
        CHECK(bwd["plan"]["blocks"].get<double>() == f.blocks);
        CHECK(fwd["tensor_engine"]["macs"].get<double>() == f.fwd_macs);
        CHECK(bwd["tensor_engine"]["macs"].get<double>() == f.bwd_macs);
        // The operator's FLOPs count the scores the mask keeps.
        CHECK(fwd["flops"].get<double>() == Approx(f.scores * (4 * d + 4)).epsilon(1e-12));
        CHECK(bwd["flops"].get<double>() == Approx(f.scores * (10 * d + 8)).epsilon(1e-12));
        // HBM: Q, K, V read once (resident in SBUF), O and the FP32 log-sum-exp written once; the backward
        // reads Q, K, dO in both layouts, V^T, O and lse, and writes dQ, dK, dV.
        const double qb = 2.0 * sq * d, kb = 2.0 * sk * d;
        CHECK(fwd["hbm"]["read_bytes"].get<double>() == qb + 2 * kb);
        CHECK(fwd["hbm"]["write_bytes"].get<double>() == qb + 4.0 * sq);
        CHECK(bwd["hbm"]["read_bytes"].get<double>() == 4 * qb + 3 * kb + qb + 4.0 * sq);
        CHECK(bwd["hbm"]["write_bytes"].get<double>() == qb + 2 * kb);
    }
    // Causal attention takes about half the time of the full square (the diagonal blocks are whole).
    const double full = simulate(flash("flash_fwd", 4096, 128, 4096, false))["time_s"];
    const double half = simulate(flash("flash_fwd", 4096, 128, 4096, true))["time_s"];
    CHECK(half < 0.6 * full);
    CHECK(half > 0.45 * full);
}

TEST_CASE("flash attention refuses what it cannot run, naming the limit", "[kernel][flash]") {
    auto error_of = [](Run r) {
        return testing::run_isolated([&] {
            const Config c = hw::resolve_chip_config(r.chip, {}, r.overrides);
            (void)runtime::run_kernel(options_of(r), c);
            return std::string("ok");
        });
    };
    CHECK_THAT(error_of(flash("flash_fwd", 256, 256, 256, true)),
               Catch::Contains("head dimension 256 exceeds the 128x128 tensor engine"));
    Run fp8 = flash("flash_bwd", 256, 128, 256, true);
    fp8.dtype = DType::fp8_e4m3;
    CHECK_THAT(error_of(fp8), Catch::Contains("allowed bf16"));
    Run os = flash("flash_fwd", 256, 128, 256, true);
    os.overrides = {"chip.core.tensor_engine.dataflow=os"};
    CHECK_THAT(error_of(os), Catch::Contains("weight-stationary"));
    CHECK_THAT(error_of(flash("flash_fwd", 256, 128, 300, true, 100)), Catch::Contains("query offset 100"));
    // The backward keeps the query side resident: 64k queries do not fit a Trainium2 SBUF partition.
    CHECK_THAT(error_of(flash("flash_bwd", 65536, 128, 65536, true)), Catch::Contains("per SBUF partition"));
}
