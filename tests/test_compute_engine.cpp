#include <catch2/catch.hpp>

#include "trnsim/hw/compute_engine.h"

using namespace trnsim;
using namespace trnsim::hw;

namespace {

ComputeEngineSpec vector_spec() {
    ComputeEngineSpec s;
    s.kind = EngineKind::vector;
    s.clock = Frequency{1e9};
    s.min_ii = 64;
    s.access_latency = 60;
    s.dependency_overhead = 100;
    s.elems_per_cycle_16bit = 1;
    s.elems_per_cycle_32bit = 1;
    return s;
}

Program two_buffers(int cols) {
    Program p;
    p.buffers.push_back({"a", MemSpace::sbuf, DType::bf16, 128, cols, 1});
    p.buffers.push_back({"b", MemSpace::sbuf, DType::bf16, 128, cols, 1});
    p.buffers.push_back({"c", MemSpace::sbuf, DType::bf16, 128, cols, 1});
    return p;
}

Instruction op(Op o, int dst, int src0, int src1, int cols) {
    Instruction i;
    i.op = o;
    i.dst = {dst, 0, 128, 0, cols};
    i.src0 = {src0, 0, 128, 0, cols};
    if (src1 >= 0) i.src1 = {src1, 0, 128, 0, cols};
    return i;
}

}  // namespace

TEST_CASE("one-input instructions cost N cycles, two-input 2N, never less than the minimum II", "[compute_engine]") {
    ComputeEngine e(vector_spec());
    Program p = two_buffers(1024);
    CHECK(e.busy_cycles(p, op(Op::tensor_copy, 1, 0, -1, 1024)) == 1024);
    CHECK(e.busy_cycles(p, op(Op::tensor_tensor, 2, 0, 1, 1024)) == 2048);
    CHECK(e.busy_cycles(p, op(Op::tensor_copy, 1, 0, -1, 16)) == 64);
    Instruction recip = op(Op::activation, 1, 0, -1, 100);
    recip.func = ActFunc::reciprocal;
    CHECK(e.busy_cycles(p, recip) == 800);  // VectorE reciprocal: 8N
}

TEST_CASE("the data-path width divides the streaming cost by elements per cycle", "[compute_engine]") {
    auto spec = vector_spec();
    spec.elems_per_cycle_16bit = 4;
    spec.elems_per_cycle_32bit = 2;
    ComputeEngine e(spec);
    Program p = two_buffers(1024);
    CHECK(e.busy_cycles(p, op(Op::tensor_copy, 1, 0, -1, 1024)) == 256);
    p.buffers[1].dtype = DType::fp32;  // 32-bit output: the 32-bit rate applies
    CHECK(e.busy_cycles(p, op(Op::tensor_copy, 1, 0, -1, 1024)) == 512);
}

TEST_CASE("independent instructions issue back to back, a dependent one pays the dependency overhead",
          "[compute_engine]") {
    ComputeEngine e(vector_spec());
    Program p = two_buffers(512);
    const auto a = e.issue(p, op(Op::tensor_copy, 1, 0, -1, 512), 0);
    CHECK(a.start == 0);
    CHECK(a.end == 512 + 60);                                          // result visible after the access latency
    const auto b = e.issue(p, op(Op::tensor_copy, 2, 0, -1, 512), 0);  // independent
    CHECK(b.start == 512);
    const auto c = e.issue(p, op(Op::tensor_copy, 0, 2, -1, 512), 0);  // reads b's output
    CHECK(c.start == b.start + 512 + 100);
}

TEST_CASE("GpSimd instructions pay their start overhead", "[compute_engine]") {
    auto spec = vector_spec();
    spec.kind = EngineKind::gpsimd;
    spec.start_overhead = 150;
    ComputeEngine e(spec);
    Program p = two_buffers(128);
    CHECK(e.busy_cycles(p, op(Op::identity, 1, -1, -1, 128)) == 150 + 128);
}

TEST_CASE("NC-v4's exponential streams at fast_exp times the Scalar engine's rate, other engines have none",
          "[compute_engine]") {
    auto spec = vector_spec();
    spec.exp_elems_per_cycle_16bit = 8;
    spec.exp_elems_per_cycle_32bit = 4;
    ComputeEngine e(spec);
    Program p = two_buffers(1024);
    CHECK(e.busy_cycles(p, op(Op::exponential, 1, 0, -1, 1024)) == 128);
    p.buffers[0].dtype = DType::fp32;  // FP32 scores from PSUM
    CHECK(e.busy_cycles(p, op(Op::exponential, 1, 0, -1, 1024)) == 256);
    Instruction sum = op(Op::exponential, 1, 0, -1, 1024);
    sum.accumulate = true;
    sum.acc = {2, 0, 128, 0, 1};
    CHECK(e.busy_cycles(p, sum) == 256 + 64);  // the row sums: MIN_II more, as activation_reduce
    ComputeEngine none(vector_spec());
    CHECK_THROWS_AS(none.busy_cycles(p, op(Op::exponential, 1, 0, -1, 1024)), std::logic_error);
}
