#pragma once
// Builds a NeuronCore program and inserts its synchronisation. Each buffer has two semaphores: one that
// its writers increment and one that its readers increment on completion. An instruction emitted on a
// stream (an engine or a DMA queue) waits for every earlier write of the buffers it reads (RAW), and for
// every earlier read and write of the buffers it writes (WAR, WAW), unless those came from its own
// stream: a stream is in order, and the engine model charges its own dependency cost. Program order is
// emission order, so a kernel double-buffers by emitting into alternating buffers.

#include <string>
#include <vector>

#include "trnsim/hw/isa.h"
#include "trnsim/hw/neuron_core.h"

namespace trnsim::lowering {

class ProgramBuilder {
public:
    explicit ProgramBuilder(const hw::NeuronCoreSpec& core);

    int sbuf(const std::string& name, DType dtype, int rows, int cols, int pack = 1);
    int psum(const std::string& name, int rows, int cols);
    int dram(const std::string& name, DType dtype, std::int64_t rows, std::int64_t cols, bool is_output);

    // SBUF bytes per partition allocated so far.
    std::uint64_t sbuf_bytes_per_partition() const { return m_sbuf_bytes; }

    void emit(hw::EngineKind engine, hw::Instruction ins);
    void emit_dma(int queue, hw::Instruction ins);

    hw::TileRef tile(int buffer, int row0, int rows, int col0, int cols) const;
    hw::TileRef whole(int buffer) const;

    hw::Program take();
    const hw::Program& program() const { return m_program; }

private:
    struct BufferSync {
        std::int32_t write_sem = 0;
        std::int32_t read_sem = 0;
        std::int64_t writes = 0;
        std::int64_t reads = 0;
        int last_writer = -1;  // stream of the latest write
        std::vector<int> readers_since_write;
    };
    void emit_on(int stream, hw::Instruction& ins);
    void wait(int stream, hw::Instruction& ins, std::int32_t sem, std::int64_t value);

    hw::Program m_program;
    std::vector<BufferSync> m_sync;
    std::vector<std::vector<std::int64_t>> m_waited;  // [stream][semaphore] value already waited for
    std::uint64_t m_sbuf_bytes = 0;
    std::uint64_t m_next_address = 0;
    int m_psum_rows = 128;
};

}  // namespace trnsim::lowering
