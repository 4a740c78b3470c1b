#include "trnsim/hw/isa.h"

namespace trnsim::hw {

const char* engine_name(EngineKind e) {
    switch (e) {
        case EngineKind::tensor: return "tensor";
        case EngineKind::vector: return "vector";
        case EngineKind::scalar: return "scalar";
        case EngineKind::gpsimd: return "gpsimd";
    }
    return "?";
}

const char* op_name(Op op) {
    switch (op) {
        case Op::load_stationary: return "load_stationary";
        case Op::multiply_moving: return "multiply_moving";
        case Op::matmul_os: return "matmul_os";
        case Op::tensor_copy: return "tensor_copy";
        case Op::activation: return "activation";
        case Op::exponential: return "exponential";
        case Op::tensor_scalar: return "tensor_scalar";
        case Op::tensor_tensor: return "tensor_tensor";
        case Op::tensor_reduce: return "tensor_reduce";
        case Op::bn_stats: return "bn_stats";
        case Op::bn_aggr: return "bn_aggr";
        case Op::memset: return "memset";
        case Op::identity: return "identity";
        case Op::affine_select: return "affine_select";
        case Op::dropout: return "dropout";
        case Op::dma_load: return "dma_load";
        case Op::dma_store: return "dma_store";
    }
    return "?";
}

std::uint64_t dma_bytes(const Program& program, const Instruction& ins) {
    const auto& t = program.dram.at(static_cast<std::size_t>(ins.dram.tensor));
    const TileRef& tile = ins.op == Op::dma_load ? ins.dst : ins.src0;
    // A broadcast load reads its DRAM row once per destination row.
    return static_cast<std::uint64_t>(tile.rows) * static_cast<std::uint64_t>(tile.cols) * dtype_bytes(t.dtype);
}

std::uint64_t Program::instruction_count() const {
    std::uint64_t n = 0;
    for (const auto& s : engines) n += s.size();
    for (const auto& q : dma_queues) n += q.size();
    return n;
}

std::uint64_t Program::dma_read_bytes() const {
    std::uint64_t n = 0;
    for (const auto& q : dma_queues)
        for (const auto& ins : q)
            if (ins.op == Op::dma_load) n += dma_bytes(*this, ins);
    return n;
}

std::uint64_t Program::dma_write_bytes() const {
    std::uint64_t n = 0;
    for (const auto& q : dma_queues)
        for (const auto& ins : q)
            if (ins.op == Op::dma_store) n += dma_bytes(*this, ins);
    return n;
}

}  // namespace trnsim::hw
