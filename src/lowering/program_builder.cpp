#include "trnsim/lowering/program_builder.h"

#include <algorithm>

namespace trnsim::lowering {

using hw::Instruction;
using hw::Op;
using hw::TileRef;

ProgramBuilder::ProgramBuilder(const hw::NeuronCoreSpec& core) : m_psum_rows(core.sbuf_partitions) {}

namespace {
constexpr int k_streams_compute = hw::k_compute_engines;
}

int ProgramBuilder::sbuf(const std::string& name, DType dtype, int rows, int cols, int pack) {
    hw::BufferDecl b{name, hw::MemSpace::sbuf, dtype, rows, cols, pack};
    m_sbuf_bytes += b.bytes_per_partition();
    m_program.buffers.push_back(b);
    BufferSync s;
    s.write_sem = m_program.semaphores++;
    s.read_sem = m_program.semaphores++;
    m_sync.push_back(s);
    return static_cast<int>(m_program.buffers.size()) - 1;
}

int ProgramBuilder::psum(const std::string& name, int rows, int cols) {
    const int id = sbuf(name, DType::fp32, rows, cols, 1);
    m_sbuf_bytes -= m_program.buffers[static_cast<std::size_t>(id)].bytes_per_partition();
    m_program.buffers[static_cast<std::size_t>(id)].space = hw::MemSpace::psum;
    return id;
}

int ProgramBuilder::dram(const std::string& name, DType dtype, std::int64_t rows, std::int64_t cols, bool is_output) {
    hw::DramTensor t{name, dtype, rows, cols, m_next_address, is_output};
    // Tensors start on 4 KiB boundaries.
    m_next_address += (t.bytes() + 4095) / 4096 * 4096;
    m_program.dram.push_back(t);
    return static_cast<int>(m_program.dram.size()) - 1;
}

TileRef ProgramBuilder::tile(int buffer, int row0, int rows, int col0, int cols) const {
    return TileRef{buffer, row0, rows, col0, cols};
}

TileRef ProgramBuilder::whole(int buffer) const {
    const auto& b = m_program.buffers[static_cast<std::size_t>(buffer)];
    return TileRef{buffer, 0, b.rows, 0, b.cols};
}

void ProgramBuilder::wait(int stream, Instruction& ins, std::int32_t sem, std::int64_t value) {
    if (value <= 0) return;
    auto& waited = m_waited[static_cast<std::size_t>(stream)];
    if (waited.size() < static_cast<std::size_t>(m_program.semaphores)) waited.resize(m_program.semaphores, 0);
    if (waited[static_cast<std::size_t>(sem)] >= value) return;
    waited[static_cast<std::size_t>(sem)] = value;
    ins.waits.push_back({sem, value});
}

void ProgramBuilder::emit_on(int stream, Instruction& ins) {
    if (m_waited.size() <= static_cast<std::size_t>(stream)) m_waited.resize(static_cast<std::size_t>(stream) + 1);
    std::vector<int> reads;
    std::vector<int> writes;
    auto add = [](std::vector<int>& v, const TileRef& t) {
        if (t.valid() && std::find(v.begin(), v.end(), t.buffer) == v.end()) v.push_back(t.buffer);
    };
    add(reads, ins.src0);
    add(reads, ins.src1);
    if (ins.scalar0.per_row) add(reads, ins.scalar0.tile);
    if (ins.scalar1.per_row) add(reads, ins.scalar1.tile);
    if (ins.op != Op::dma_store && ins.op != Op::load_stationary) add(writes, ins.dst);
    if (ins.op == Op::activation && ins.accumulate) add(writes, ins.acc);

    for (int b : reads) {
        auto& s = m_sync[static_cast<std::size_t>(b)];
        if (s.last_writer >= 0 && s.last_writer != stream) wait(stream, ins, s.write_sem, s.writes);
    }
    for (int b : writes) {
        auto& s = m_sync[static_cast<std::size_t>(b)];
        if (s.last_writer >= 0 && s.last_writer != stream) wait(stream, ins, s.write_sem, s.writes);
        const bool foreign_readers = std::any_of(s.readers_since_write.begin(), s.readers_since_write.end(),
                                                 [stream](int r) { return r != stream; });
        if (foreign_readers) wait(stream, ins, s.read_sem, s.reads);
    }
    for (int b : reads) {
        auto& s = m_sync[static_cast<std::size_t>(b)];
        ins.signals.push_back(s.read_sem);
        ++s.reads;
        s.readers_since_write.push_back(stream);
    }
    for (int b : writes) {
        auto& s = m_sync[static_cast<std::size_t>(b)];
        ins.signals.push_back(s.write_sem);
        ++s.writes;
        s.last_writer = stream;
        s.readers_since_write.clear();
    }
}

void ProgramBuilder::emit(hw::EngineKind engine, Instruction ins) {
    emit_on(static_cast<int>(engine), ins);
    m_program.stream(engine).push_back(std::move(ins));
}

void ProgramBuilder::emit_dma(int queue, Instruction ins) {
    emit_on(k_streams_compute + queue, ins);
    if (m_program.dma_queues.size() <= static_cast<std::size_t>(queue)) m_program.dma_queues.resize(queue + 1);
    m_program.dma_queues[static_cast<std::size_t>(queue)].push_back(std::move(ins));
}

hw::Program ProgramBuilder::take() {
    return std::move(m_program);
}

}  // namespace trnsim::lowering
