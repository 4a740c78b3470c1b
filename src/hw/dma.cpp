#include "trnsim/hw/dma.h"

#include <algorithm>
#include <cmath>

#include "trnsim/hw/i_memory.h"

namespace trnsim::hw {

void DmaSpec::declare(ParamRegistry& r) {
    const std::string p = "chip.core.dma.";
    r.declare({p + "engines", ParamType::integer, "DMA engines per NeuronCore", "16", "[NKI-DMA]", {}, 1, 1024});
    r.declare({p + "queues", ParamType::integer, "DMA queues (rings) per engine", "16", "[NKI-DMA]", {}, 1, 1024});
    r.declare({p + "engine_bandwidth",
               ParamType::bandwidth,
               "theoretical bandwidth of one DMA engine",
               std::nullopt,
               "",
               {},
               k_min_bandwidth,
               1e15});
    r.declare({p + "descriptor_cost",
               ParamType::duration,
               "engine time per contiguous chunk (DMA buffer) of a descriptor",
               "20ns",
               "calibrated assumption: 2 KiB per partition reaches 82-86% of engine bandwidth on trn1/trn2 (76% "
               "on trn3), 256 B is overhead-bound, as [NKI-DMABW] advises (docs/calibration.md)",
               {},
               0,
               1e-3});
    r.declare({p + "transfer_latency",
               ParamType::duration,
               "fixed cost from issuing a transfer to its data moving (descriptor setup, sync, semaphore-to-start)",
               "1.3us",
               "[NKI-DMABW]",
               {},
               0,
               1e-3});
    // Read by the collectives' endpoints (topology.cpp), not by the kernels' DMA subsystem.
    r.declare({p + "arbitration",
               ParamType::choice,
               "how a DMA ring's engines choose among its queues of collective traffic: round-robin at packet "
               "boundaries (each stream's share set by its packet size, cluster.cc.*packet), or strict-priority "
               "(the tensor-parallel stream 0 before the data-parallel stream 1)",
               "round-robin",
               "[CC-OVERLAP] round-robin arbitration between DMA rings, switching at packet boundaries (Trn1, Trn2)",
               {"round-robin", "strict-priority"}});
    r.declare({p + "reduce_rate",
               ParamType::real,
               "throughput of the DMA engines adding received data into local data (a collective's reduction), "
               "as a fraction of their copy throughput",
               "0.5",
               "[NKI-ARCH3] 50% of DMA throughput via the DMA collective compute engines before NeuronCore-v4",
               {},
               1e-6,
               1});
}

DmaSpec DmaSpec::from_config(const Config& c) {
    const std::string p = "chip.core.dma.";
    DmaSpec s;
    s.engines = static_cast<int>(c.get_int(p + "engines"));
    s.queues = static_cast<int>(c.get_int(p + "queues"));
    s.engine_bandwidth = c.get_bandwidth(p + "engine_bandwidth");
    s.descriptor_cost = c.get_duration(p + "descriptor_cost");
    s.transfer_latency = c.get_duration(p + "transfer_latency");
    return s;
}

DmaSubsystem::DmaSubsystem(const sc_core::sc_module_name& name, const DmaSpec& spec, int sbuf_partitions)
    : sc_core::sc_module(name),
      memory_port("memory_port"),
      m_spec(spec),
      m_partitions_per_engine(std::max(1, (sbuf_partitions + spec.engines - 1) / spec.engines)),
      m_latency_fs(static_cast<std::uint64_t>(std::llround(spec.transfer_latency.seconds * 1e15))),
      m_fs_per_byte(1e15 / spec.engine_bandwidth.bytes_per_s),
      m_descriptor_fs(static_cast<std::uint64_t>(std::llround(spec.descriptor_cost.seconds * 1e15))) {
    for (int e = 0; e < spec.engines; ++e) {
        auto engine = std::make_unique<Engine>();
        engine->rings.resize(static_cast<std::size_t>(spec.queues));
        engine->timing = new MemoryTiming;
        engine->request.set_extension(engine->timing);
        m_engines.push_back(std::move(engine));
        sc_core::sc_spawn_options opts;
        sc_core::sc_spawn([this, e] { engine_thread(e); }, sc_core::sc_gen_unique_name("engine"), &opts);
    }
}

void DmaSubsystem::submit(const DmaTransfer& t, std::function<void(std::uint64_t)> on_complete) {
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    const std::uint64_t id = m_pending.size();
    m_pending.push_back({0, 0, std::move(on_complete)});
    ++m_stats.transfers;
    const bool broadcast = t.broadcast_bytes > 0;
    std::uint64_t offset = 0;
    for (int first = 0, e = 0; first < t.partitions; first += m_partitions_per_engine, ++e) {
        const int parts = std::min(m_partitions_per_engine, t.partitions - first);
        Part p;
        p.transfer = id;
        p.ready_fs = now + m_latency_fs;
        p.address = t.address + (broadcast ? 0 : offset);
        p.bytes = static_cast<std::uint64_t>(parts) * t.bytes_per_partition;
        p.chunks = parts * t.chunks_per_partition;
        p.write = t.write;
        offset += p.bytes;
        auto& engine = *m_engines[static_cast<std::size_t>(e % m_spec.engines)];
        engine.rings[static_cast<std::size_t>(t.queue % m_spec.queues)].push_back(p);
        engine.arrival.notify(sc_core::SC_ZERO_TIME);
        ++m_pending[id].parts_left;
    }
}

bool DmaSubsystem::pick(Engine& engine, std::uint64_t now, Part& out, std::uint64_t& earliest_ready) {
    const int rings = static_cast<int>(engine.rings.size());
    earliest_ready = UINT64_MAX;
    for (int i = 0; i < rings; ++i) {
        auto& ring = engine.rings[static_cast<std::size_t>((engine.next_ring + i) % rings)];
        if (ring.empty()) continue;
        if (ring.front().ready_fs <= now) {
            out = ring.front();
            ring.pop_front();
            engine.next_ring = (engine.next_ring + i + 1) % rings;
            return true;
        }
        earliest_ready = std::min(earliest_ready, ring.front().ready_fs);
    }
    return false;
}

void DmaSubsystem::engine_thread(int index) {
    Engine& engine = *m_engines[static_cast<std::size_t>(index)];
    tlm::tlm_generic_payload& trans = engine.request;
    MemoryTiming& timing = *engine.timing;
    for (;;) {
        const std::uint64_t now = sc_core::sc_time_stamp().value();
        Part part{};
        std::uint64_t earliest = UINT64_MAX;
        if (!pick(engine, now, part, earliest)) {
            if (earliest == UINT64_MAX)
                sc_core::wait(engine.arrival);
            else
                sc_core::wait(sc_core::sc_time::from_value(earliest - now), engine.arrival);
            ++m_stats.wakeups;
            continue;
        }
        const auto engine_fs =
            static_cast<std::uint64_t>(part.chunks) * m_descriptor_fs +
            static_cast<std::uint64_t>(std::llround(static_cast<double>(part.bytes) * m_fs_per_byte));
        trans.set_command(part.write ? tlm::TLM_WRITE_COMMAND : tlm::TLM_READ_COMMAND);
        trans.set_address(part.address);
        trans.set_data_ptr(nullptr);
        trans.set_data_length(static_cast<unsigned int>(part.bytes));
        trans.set_streaming_width(static_cast<unsigned int>(part.bytes));
        trans.set_response_status(tlm::TLM_INCOMPLETE_RESPONSE);
        timing.accept_delay = sc_core::SC_ZERO_TIME;
        // The part is done when both the engine has moved its bytes and the memory has delivered them.
        const std::uint64_t engine_end = now + engine_fs;
        const std::uint64_t transfer = part.transfer;
        timing.on_done = [this, transfer, engine_end](std::uint64_t memory_done) {
            finish_part(transfer, std::max(engine_end, memory_done));
        };
        sc_core::sc_time delay = sc_core::SC_ZERO_TIME;
        memory_port->b_transport(trans, delay);  // may wait while the memory's queues are full
        const std::uint64_t accepted = sc_core::sc_time_stamp().value() + timing.accept_delay.value();
        const std::uint64_t busy_until = std::max(engine_end, accepted);
        m_stats.busy_fs += busy_until - now;
        ++m_stats.descriptors;
        (part.write ? m_stats.write_bytes : m_stats.read_bytes) += part.bytes;
        const std::uint64_t after = sc_core::sc_time_stamp().value();
        if (busy_until > after) {
            sc_core::wait(sc_core::sc_time::from_value(busy_until - after));
            ++m_stats.wakeups;
        }
    }
}

void DmaSubsystem::finish_part(std::uint64_t transfer, std::uint64_t done_fs) {
    Pending& pending = m_pending[transfer];
    pending.done_fs = std::max(pending.done_fs, done_fs);
    if (--pending.parts_left == 0) {
        ++m_stats.completed;
        pending.on_complete(pending.done_fs);
        pending.on_complete = nullptr;
    }
}
}  // namespace trnsim::hw
