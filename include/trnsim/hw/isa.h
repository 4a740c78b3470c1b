#pragma once
// The NeuronCore program: what the lowering emits and the NeuronCore model executes.
//
// Modelled on the NeuronCore ISA as the NKI documents describe it [NKI-ARCH1]: four compute engines
// (Tensor, Vector, Scalar, GpSimd) each run their own in-order instruction stream; DMA transfers are
// issued on DMA queues; engines and queues synchronise only through semaphores (an instruction may wait
// for semaphores to reach values, and increments semaphores when it completes). On-chip tensors live in
// SBUF or PSUM buffers declared up front (so capacity is checked statically); HBM tensors are DRAM
// tensors with a flat address.
//
// Abstraction: a buffer is addressed logically (rows x cols of one dtype) rather than by byte address;
// the partition mapping is rows -> partitions, with `pack` logical rows per partition for the FP8
// double-row and MX quad modes.

#include <cstdint>
#include <string>
#include <vector>

#include "trnsim/core/numeric.h"

namespace trnsim::hw {

enum class EngineKind : std::uint8_t { tensor, vector, scalar, gpsimd };
constexpr int k_compute_engines = 4;
const char* engine_name(EngineKind e);

enum class MemSpace : std::uint8_t { sbuf, psum };

struct BufferDecl {
    std::string name;
    MemSpace space = MemSpace::sbuf;
    DType dtype = DType::bf16;
    std::int32_t rows = 0;  // logical rows (partition axis)
    std::int32_t cols = 0;  // elements per logical row (free axis)
    std::int32_t pack = 1;  // logical rows per partition (FP8 double-row: 2, MX quad: 4)
    std::int32_t partitions() const { return (rows + pack - 1) / pack; }
    std::uint64_t bytes_per_partition() const {
        return static_cast<std::uint64_t>(pack) * static_cast<std::uint64_t>(cols) * dtype_bytes(dtype);
    }
};

struct DramTensor {
    std::string name;
    DType dtype = DType::bf16;
    std::int64_t rows = 0;
    std::int64_t cols = 0;  // row-major
    std::uint64_t address = 0;
    bool is_output = false;
    std::uint64_t bytes() const { return static_cast<std::uint64_t>(rows * cols) * dtype_bytes(dtype); }
};

// A rectangle of a buffer (logical rows x cols).
struct TileRef {
    std::int32_t buffer = -1;
    std::int32_t row0 = 0;
    std::int32_t rows = 0;
    std::int32_t col0 = 0;
    std::int32_t cols = 0;
    bool valid() const { return buffer >= 0; }
};

// A rectangle of a DRAM tensor.
struct DramRef {
    std::int32_t tensor = -1;
    std::int64_t row0 = 0;
    std::int64_t rows = 0;
    std::int64_t col0 = 0;
    std::int64_t cols = 0;
};

enum class Op : std::uint8_t {
    // Tensor engine
    load_stationary,  // src0 [K, C] (SBUF) -> the array's weights
    multiply_moving,  // src0 [K, N] (SBUF) x stationary -> dst [C, N] (PSUM); `accumulate` adds into dst
    matmul_os,        // output-stationary fold: src0 [K, R], src1 [K, C] -> dst [R, C] (PSUM)
    // Vector / Scalar / GpSimd engines
    tensor_copy,    // dst = src0 (with dtype conversion)
    activation,     // dst = func(src0 * scale + bias); optional accumulation of the row sums into acc
    exponential,    // dst = exp(src0 - scalar0); optional row sums into acc (Vector, NC-v4 only: nki.isa.exponential)
    tensor_scalar,  // dst = (src0 alu0 scalar0) alu1 scalar1
    tensor_tensor,  // dst = src0 alu0 src1
    tensor_reduce,  // dst[r, 0] = reduce_alu0 over the free axis of src0
    bn_stats,       // dst[r, 3i..3i+2] = count, mean, variance of chunk i (512 elements) of row r of src0
    bn_aggr,        // dst[r, 0..1] = mean, variance of row r combined from bn_stats chunks in src0
    memset,         // dst = scalar0
    identity,       // dst = identity matrix (GpSimd iota + affine_select)
    affine_select,  // dst[r, c] = src0[r, c] where r - c + offset >= 0, else scalar0 (GpSimd; causal masks)
    dropout,        // dst = src0, each element zeroed with probability scalar0 (Vector: nki.isa.dropout)
    // DMA (issued on a queue)
    dma_load,   // dram -> dst (SBUF); a DRAM row with rows == 1 and dst.rows > 1 broadcasts to partitions
    dma_store,  // src0 (SBUF) -> dram
};
const char* op_name(Op op);

enum class ActFunc : std::uint8_t { identity, exp, gelu_tanh, silu, rsqrt, square, reciprocal, ln };
enum class AluOp : std::uint8_t { none, add, subtract, multiply, max, divide };

// A scalar operand: a constant, or one value per row taken from column `tile.col0` of a tile.
struct Scalar {
    bool per_row = false;
    float value = 0.0f;
    TileRef tile;
};

struct SemWait {
    std::int32_t semaphore = 0;
    std::int64_t value = 0;  // wait until the semaphore's count >= value
};

struct Instruction {
    Op op = Op::tensor_copy;
    TileRef dst;
    TileRef src0;
    TileRef src1;
    TileRef acc;  // activation: row-sum accumulation target
    DramRef dram;
    ActFunc func = ActFunc::identity;
    AluOp alu0 = AluOp::none;
    AluOp alu1 = AluOp::none;
    Scalar scalar0;
    Scalar scalar1;
    bool accumulate = false;
    std::int64_t offset = 0;  // affine_select: the predicate's constant
    std::vector<SemWait> waits;
    std::vector<std::int32_t> signals;  // each incremented by one when the instruction completes
};

struct Program {
    std::vector<BufferDecl> buffers;
    std::vector<DramTensor> dram;
    std::vector<Instruction> engines[k_compute_engines];
    std::vector<std::vector<Instruction>> dma_queues;
    std::int32_t semaphores = 0;

    std::vector<Instruction>& stream(EngineKind e) { return engines[static_cast<int>(e)]; }
    const std::vector<Instruction>& stream(EngineKind e) const { return engines[static_cast<int>(e)]; }
    std::uint64_t instruction_count() const;
    // Bytes every DMA instruction moves, summed (what the program needs from and to HBM).
    std::uint64_t dma_read_bytes() const;
    std::uint64_t dma_write_bytes() const;
};

// Bytes one DMA instruction moves through memory.
std::uint64_t dma_bytes(const Program& program, const Instruction& ins);

}  // namespace trnsim::hw
