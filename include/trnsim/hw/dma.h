#pragma once
// DMA engines of a NeuronCore [NKI-DMA][NKI-DMABW][NKI-ARCH1].
// - `engines` DMA engines (16 per core); a transfer of a tile is split across them by partition, each
//   engine serving partitions / engines consecutive partitions (8 of 128).
// - Each engine has one ring per DMA queue, in-order within a ring, round-robin across rings, and works on
//   one descriptor at a time: a part of P partitions costs P contiguous chunks x descriptor_cost plus
//   bytes / engine_bandwidth, and cannot run faster than the memory accepts the bytes.
// - A transfer becomes visible to the engines transfer_latency after it is issued (descriptor setup,
//   synchronisation, semaphore-to-start), and completes when its last part's data have arrived.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include <tlm_utils/simple_initiator_socket.h>
#include <systemc>
#include <tlm>

#include "trnsim/core/config.h"
#include "trnsim/core/units.h"
#include "trnsim/hw/i_memory.h"

namespace trnsim::hw {

struct DmaSpec {
    int engines = 16;
    int queues = 16;
    Bandwidth engine_bandwidth;
    Duration descriptor_cost;
    Duration transfer_latency;

    static void declare(ParamRegistry& registry);
    static DmaSpec from_config(const Config& config);
};

// One DMA transfer as issued by a queue.
struct DmaTransfer {
    int queue = 0;
    bool write = false;         // SBUF -> memory
    std::uint64_t address = 0;  // memory address of the first byte
    int partitions = 0;         // SBUF partitions touched
    std::uint64_t bytes_per_partition = 0;
    int chunks_per_partition = 1;       // contiguous pieces per partition
    std::uint64_t broadcast_bytes = 0;  // > 0: every partition reads the same bytes
};

struct DmaStats {
    std::uint64_t transfers = 0;
    std::uint64_t completed = 0;
    std::uint64_t descriptors = 0;
    std::uint64_t read_bytes = 0;
    std::uint64_t write_bytes = 0;
    std::uint64_t busy_fs = 0;  // summed over engines
    std::uint64_t wakeups = 0;
};

class DmaSubsystem : public sc_core::sc_module {
public:
    tlm_utils::simple_initiator_socket<DmaSubsystem> memory_port;

    DmaSubsystem(const sc_core::sc_module_name& name, const DmaSpec& spec, int sbuf_partitions);

    // Issues a transfer at the current time; `on_complete(fs)` is called once, when its last part is done.
    void submit(const DmaTransfer& transfer, std::function<void(std::uint64_t)> on_complete);

    const DmaStats& stats() const { return m_stats; }
    const DmaSpec& spec() const { return m_spec; }

private:
    struct Part {
        std::uint64_t transfer;
        std::uint64_t ready_fs;
        std::uint64_t address;
        std::uint64_t bytes;
        int chunks;
        bool write;
    };
    struct Pending {
        int parts_left = 0;
        std::uint64_t done_fs = 0;
        std::function<void(std::uint64_t)> on_complete;
    };
    struct Engine {
        std::vector<std::deque<Part>> rings;
        int next_ring = 0;
        sc_core::sc_event arrival;
        // The engine's request to memory, reused; owned here (not on the thread's stack, which is never
        // unwound because the thread waits forever).
        tlm::tlm_generic_payload request;
        MemoryTiming* timing = nullptr;  // extension owned by `request`
    };

    void engine_thread(int index);
    void finish_part(std::uint64_t transfer, std::uint64_t done_fs);
    bool pick(Engine& engine, std::uint64_t now, Part& out, std::uint64_t& earliest_ready);

    DmaSpec m_spec;
    int m_partitions_per_engine;
    std::vector<std::unique_ptr<Engine>> m_engines;
    std::vector<Pending> m_pending;
    DmaStats m_stats;
    std::uint64_t m_latency_fs;
    double m_fs_per_byte;
    std::uint64_t m_descriptor_fs;
};

}  // namespace trnsim::hw
