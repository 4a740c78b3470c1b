#pragma once
// Transaction-level HBM ("hbm" of cluster.memory_model, docs/adr/0008): the chip's memory as one FIFO whose
// rates come from the burst-level HBM model (hbm_memory.h), measured once per memory config.
//
// - Measurement (`measure_hbm_rates`): one dram::PseudoChannel of the part, with its controller settings,
//   is driven closed-loop (queues kept full, requests in order) with the bursts a sequential stream of
//   the whole chip sends it under the address map: a read stream, a write stream, and a mixed stream that
//   alternates one packet's share of reads (from one buffer) with one packet's share of writes (to
//   another). Sustained rates are taken over the second three quarters of each stream (after the queues
//   fill) and scaled by the chip's pseudo-channel count: every pseudo-channel receives the same share of
//   a sequential stream and they work independently. Each stream spans at least 8 refresh intervals, so
//   the refresh cost is averaged in. The mixed stream gives the cost of a read/write turnaround (its time
//   beyond the reads and writes at their own rates, per direction switch). The unloaded latency of a
//   packet is measured on an idle channel (rows closed): its fixed part is that latency minus the
//   packet's time at the sustained rate.
// - Model: a request of b bytes occupies the memory for b / (read or write rate) after the previous one
//   (FIFO in arrival order); its data are delivered the fixed latency after that. Completion is reported
//   within b_transport. The requester may send its next request (accept) once this one is in the
//   controller's queue with what is ahead of it: when the backlog is at most the read or write queue
//   (controller entries x burst x pseudo-channels, HbmRates::read_queue_bytes). Turnarounds follow the
//   controller's write drains, not the arrival order: while the memory stays busy, every drain_bytes
//   written cost drain_s if reads were served since the last drain (the controller batches writes between
//   its watermarks however finely they interleave with the reads); an idle memory has drained its queues.
// - Shared with the kernels (set_kernel_load): while the chip's kernels take a share u of the memory's time,
//   the controller serves the kernels' and the collectives' requests round-robin, so a collective request
//   gets the time they leave, and at least half: its occupancy is stretched by 1 / max(1 - u, 1/2), as the
//   DMA rings are (hw::ChipEndpoint::set_dma_load). Kernels wanting more than half fall behind: of a
//   request's stretched time 2a they get a and wanted 2ua, so they lose (2u - 1) a / u of their own time,
//   summed in MemoryStats::kernel_lag_fs (the training runner holds them for it, docs/training.md step 7).
// Not modelled (beyond what the measurement averages in): bank conflicts between more than two
// concurrent streams, addresses (every request is a sequential stream's), refresh as discrete events,
// queueing inside the controller. docs/adr/0008 lists the limits.

#include <cstdint>
#include <map>
#include <string>

#include "trnsim/hw/hbm_spec.h"
#include "trnsim/hw/i_memory.h"

namespace trnsim::hw {

// What the measurement gives, for the whole memory described by the HbmSpec (all its stacks).
struct HbmRates {
    double peak_bytes_per_s = 0;   // data-bus peak (HbmSpec::peak_bytes_per_s)
    double read_bytes_per_s = 0;   // sustained sequential reads
    double write_bytes_per_s = 0;  // sustained sequential writes
    double mixed_bytes_per_s = 0;  // the mixed stream: one packet's reads, one packet's writes, alternating
    double turnaround_s = 0;       // per direction switch of the mixed stream (packet by packet), amortized
    // The controller drains writes in batches between its watermarks (write_high - write_low entries per
    // pseudo-channel): the bytes of one batch over the chip, and what a pair of turns around a batch costs
    // when reads are served around it (from the mixed stream: 2 turnaround_s x max(1, batch / packet share)).
    double drain_bytes = 0;
    double drain_s = 0;
    double read_latency_s = 0;   // unloaded packet read latency minus the packet's time at read_bytes_per_s
    double write_latency_s = 0;  // likewise for writes
    double packet_read_s = 0;    // the unloaded packet read latency as measured
    double packet_write_s = 0;
    // The controller's read and write queues over the chip (entries x burst x pseudo-channels): how far
    // a requester may run ahead of the memory.
    double read_queue_bytes = 0;
    double write_queue_bytes = 0;
    std::uint64_t bursts_simulated = 0;  // by the measurement, on one pseudo-channel
};

// Runs the measurement (deterministic; plain C++, no SystemC). `packet_bytes`: the size of one access.
HbmRates measure_hbm_rates(const HbmSpec& spec, std::uint64_t packet_bytes);
// The measurement for the whole chip's memory of `config` (chip.memory.hbm.*, chip.memory.stacks) and
// packets of `packet_bytes`, memoized in-process per distinct configuration.
const HbmRates& hbm_rates(const Config& config, std::uint64_t packet_bytes);

class HbmTlMemory : public IMemory, public ITimedAccess {
public:
    HbmTlMemory(const sc_core::sc_module_name& name, const HbmRates& rates);

    void b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay) override;
    AccessTiming timed_access(bool write, std::uint64_t bytes, std::uint64_t request_fs) override;
    ITimedAccess* direct_access() override { return this; }
    const MemoryStats& stats() const override { return m_stats; }
    double peak_bytes_per_s() const override { return m_rates.peak_bytes_per_s; }
    bool idle(std::uint64_t now_fs) const override { return m_free_fs <= now_fs; }
    void add_stats(const MemoryStats& d) override;
    void set_kernel_load(double load) override;
    std::map<std::string, double> summary() const override;
    const HbmRates& rates() const { return m_rates; }

private:
    HbmRates m_rates;
    double m_fs_per_byte[2];        // read, write
    std::uint64_t m_latency_fs[2];  // read, write
    std::uint64_t m_queue_fs[2];    // read, write: the controller's queue at the rate
    std::uint64_t m_drain_bytes;
    std::uint64_t m_drain_fs;
    double m_kernel_load = 0;
    std::uint64_t m_free_fs = 0;
    std::uint64_t m_written = 0;  // bytes written since the last drain, in the current busy period
    bool m_read = false;          // a read served since the last drain, in the current busy period
    std::uint64_t m_last_bytes[2] = {~std::uint64_t{0}, ~std::uint64_t{0}};  // the last request's size and
    std::uint64_t m_last_duration[2] = {0, 0};                               // its time, per direction
    std::uint64_t m_last_lag[2] = {0, 0};                                    // and the kernels' lag
    MemoryStats m_stats;
};

}  // namespace trnsim::hw
