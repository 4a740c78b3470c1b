#pragma once
// HBM memory model ("hbm" in the memory family): stacks -> channels -> pseudo-channels, each pseudo-channel
// a dram::PseudoChannel (bank state machines, FR-FCFS controller, refresh; every JEDEC constraint of
// memory.md), behind a TLM-2.0 target socket. A request is split into bursts of the access granularity,
// each routed by the address map to its pseudo-channel; b_transport waits while a target queue is full,
// and the request completes (MemoryTiming::on_done) when its last burst has. The pseudo-channels run in
// their own tick domain (CK x tick_multiplier) and are advanced event by event: the model wakes only at
// ticks where a completion could fall due (or, for a channel a sender waits on, where a command may issue):
// commands in between are simulated in one go, and completions are reported as soon as their RD/WR issues.
// With a single sender (set_single_sender, `trnsim mem`) its waits for room are simulated at once, and it may
// send() requests whose completions go to a sink function rather than on_done.

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "trnsim/core/clock.h"
#include "trnsim/hw/hbm_spec.h"
#include "trnsim/hw/i_memory.h"

namespace trnsim::hw {

// Totals over every pseudo-channel, with energy.
struct HbmReport {
    std::uint64_t reads = 0, writes = 0;
    std::uint64_t row_hits = 0, row_misses = 0, row_conflicts = 0;
    std::uint64_t acts = 0, refreshes = 0;
    double refresh_share = 0;  // mean over pseudo-channels of the time refresh blocked the channel
    double mean_latency_ns = 0;
    double energy_j = 0;  // commands + I/O + background
    double energy_background_j = 0;
    double energy_refresh_j = 0;
    double seconds = 0;  // the time the background and refresh energies cover
    double bytes = 0;
    double pj_per_bit() const { return bytes > 0 ? energy_j * 1e12 / (bytes * 8) : 0; }
    double row_hit_rate() const {
        const double n = static_cast<double>(row_hits + row_misses + row_conflicts);
        return n > 0 ? static_cast<double>(row_hits) / n : 0;
    }
    std::uint64_t timing_violations = 0;
    std::vector<std::string> violation_samples;  // the first few, when check_timing is on
};

class HbmMemory : public IMemory {
public:
    HbmMemory(const sc_core::sc_module_name& name, const HbmSpec& spec);

    void b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay) override;
    const MemoryStats& stats() const override { return m_stats; }
    double peak_bytes_per_s() const override { return m_spec.peak_bytes_per_s(); }

    const HbmSpec& spec() const { return m_spec; }
    // Promise by the initiator: requests reach the memory from one process only, one request at a time, and
    // its completion callbacks only record (as in `trnsim mem`). A sender waiting for queue space then observes
    // nothing until the queue gains room, so the wrapper simulates everything up to then at once instead of
    // wake-up by wake-up (hold_until_room). Results do not change. Kernels (several DMA engines) leave it off.
    void set_single_sender(bool on) { m_single_sender = on; }
    // b_transport (with a zero delay), except that the request's completion goes to the sink set by
    // set_done_sink, as fn(ctx, tag, done_fs), instead of to MemoryTiming::on_done (still read, when present,
    // for accept_delay and arrival_fs): no std::function built, moved and destroyed per request.
    using DoneFn = void (*)(void* ctx, std::uint64_t tag, std::uint64_t done_fs);
    void set_done_sink(DoneFn fn, void* ctx) {
        m_done_fn = fn;
        m_done_ctx = ctx;
    }
    void send(tlm::tlm_generic_payload& trans, std::uint64_t tag) { transport(trans, tag); }
    // Brings every pseudo-channel up to `end_fs` (refreshes while idle included): call once the simulation
    // has ended, before report(); report() integrates time-based energy up to there.
    void finish(std::uint64_t end_fs) override;
    std::map<std::string, double> summary() const override;
    // Totals and energy up to the current time; runs the timing checker when check_timing is on.
    HbmReport report() const;

private:
    static constexpr std::uint64_t kNoTag = UINT64_MAX;
    static constexpr std::uint64_t kDirect = std::uint64_t{1} << 63;  // a burst's id: this bit and the tag
    struct Transaction {
        int bursts_left = 0;
        std::uint64_t done_fs = 0;
        std::uint64_t tag = kNoTag;  // sent with a tag (send): its completion goes to the sink
        std::function<void(std::uint64_t)> on_done;
    };

    void transport(tlm::tlm_generic_payload& trans, std::uint64_t tag);  // b_transport and send

    void on_wake();
    void wake_up(std::uint64_t now_tick);  // on_wake's work at tick now_tick
    void advance(std::size_t channel, std::uint64_t until_tick);
    void hold_until_room(std::size_t channel, bool write);  // set_single_sender: the sender waits on `channel`
    void update_next(std::size_t c);
    void wake_for(std::size_t c);      // after enqueuing into channel c: wake earlier if it needs it
    void wake_at(std::uint64_t tick);  // wake at `tick` unless a wake-up at or before it is pending
    std::uint64_t current_tick();      // first tick at or after the current time

    HbmSpec m_spec;
    dram::AddressMap m_map;
    ClockDomain m_ticks;
    std::vector<std::unique_ptr<dram::PseudoChannel>> m_channels;
    // Bursts enqueued and not yet completed, per pseudo-channel. Only channels with work schedule wake-ups:
    // an idle channel's refreshes are simulated when it is next advanced, so that the simulation ends.
    std::vector<std::uint64_t> m_outstanding;
    std::vector<std::uint64_t> m_next;  // per pseudo-channel: the tick it must be advanced at (update_next)
    std::vector<int> m_waiters;         // per pseudo-channel: senders waiting for room in its queues
    std::vector<std::vector<dram::IssuedCommand>> m_logs;  // when check_timing
    std::vector<Transaction> m_transactions;
    std::vector<std::uint64_t> m_free_transactions;
    std::vector<dram::Completion> m_done;
    MemoryStats m_stats;
    sc_core::sc_event m_wake;
    sc_core::sc_event m_space;  // a queue entry was freed
    std::uint64_t m_wake_tick = UINT64_MAX;
    std::uint64_t m_burst_mask = 0;  // burst bytes - 1 when a power of two (then m_burst_shift = log2), else 0
    int m_burst_shift = 0;
    std::uint64_t m_tick_fs = UINT64_MAX, m_tick = 0;  // current_tick() of the time m_tick_fs
    std::uint64_t m_end_fs = UINT64_MAX;               // set by finish(); until then reports run to the current time
    bool m_single_sender = false;
    DoneFn m_done_fn = nullptr;
    void* m_done_ctx = nullptr;
};

// Registers "hbm" with the memory-model family.
void register_hbm_memory();

}  // namespace trnsim::hw
