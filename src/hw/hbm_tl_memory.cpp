#include "trnsim/hw/hbm_tl_memory.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "trnsim/hw/dram_address.h"

namespace trnsim::hw {

namespace {

// One pseudo-channel's share of a stream: request j of the stream is burst j of the pseudo-channel.
struct StreamItem {
    bool write;
    dram::Decoded at;
};

// Drives one pseudo-channel closed-loop: requests enter in order as soon as their queue has room (the
// next one waits for its own queue, as a DMA engine's next request does); returns each request's
// completion tick, by request index.
std::vector<std::uint64_t> run_closed_loop(const HbmSpec& spec, const std::vector<StreamItem>& items) {
    dram::PseudoChannel channel(spec.org, spec.timing, spec.controller);
    std::vector<std::uint64_t> done_tick(items.size(), 0);
    std::vector<dram::Completion> done;
    std::size_t next = 0, completed = 0;
    while (completed < items.size()) {
        while (next < items.size() && channel.can_accept(items[next].write)) {
            const StreamItem& s = items[next];
            channel.enqueue(
                {next, s.write, s.at.sid, s.at.bank_group, s.at.bank, s.at.row, s.at.column, channel.now()});
            ++next;
        }
        if (next < items.size()) {
            channel.run_until(UINT64_MAX, done, true);
        } else {
            const std::uint64_t t = channel.next_event_tick();
            if (t == UINT64_MAX) throw std::logic_error("hbm rates: the pseudo-channel stopped with requests queued");
            channel.run_until(t + 1, done);
        }
        for (const auto& d : done) done_tick[d.id] = d.tick;
        completed += done.size();
        done.clear();
    }
    return done_tick;
}

// Ticks from the completion at a quarter of the stream to the last one (in completion order), and the
// bursts completed in between: the steady state, after the queues have filled.
std::pair<double, double> steady(std::vector<std::uint64_t> ticks) {
    std::sort(ticks.begin(), ticks.end());
    const std::size_t first = ticks.size() / 4;
    return {static_cast<double>(ticks.back() - ticks[first]), static_cast<double>(ticks.size() - 1 - first)};
}

}  // namespace

HbmRates measure_hbm_rates(const HbmSpec& spec, std::uint64_t packet_bytes) {
    const dram::AddressMap map(spec.org, spec.stacks, spec.map);
    const auto burst = static_cast<std::uint64_t>(spec.org.burst_bytes);
    const auto pcs = static_cast<std::uint64_t>(spec.pseudo_channels_total());
    const std::uint64_t capacity_bursts = map.capacity_bytes() / burst;
    // A sequential stream over the whole memory gives pseudo-channel 0 every pcs-th burst (the map puts
    // channel, pseudo-channel and stack in the lowest fields; xor_hashed permutes them by row, which
    // changes which pseudo-channel, not what one sees). The writes of the mixed stream go to another buffer,
    // half the memory and half the banks away: the two streams are in different banks at any moment (two
    // buffers aligned to the same bank would conflict on every switch, an unlucky placement).
    auto burst_at = [&](std::uint64_t base, std::uint64_t j) {
        return map.decode(((base + j * pcs) % capacity_bursts) * burst);
    };
    const auto banks = static_cast<std::uint64_t>(spec.org.banks());
    const std::uint64_t write_base =
        (capacity_bursts / 2 / pcs * pcs + pcs * static_cast<std::uint64_t>(spec.org.columns) * (banks / 2)) %
        capacity_bursts;
    // A packet's share of one pseudo-channel (at least one burst).
    const std::uint64_t group = std::max<std::uint64_t>(1, (packet_bytes + burst * pcs - 1) / (burst * pcs));
    // Each stream spans at least 8 refresh intervals at peak (4096 bursts at least), in whole packet pairs.
    const auto& t = spec.timing;
    std::uint64_t n = std::max<std::uint64_t>(4096, 8 * static_cast<std::uint64_t>(t.REFI) / t.BL);
    n = (n + 2 * group - 1) / (2 * group) * (2 * group);

    const double tick_s = 1.0 / spec.tick_hz();
    HbmRates r;
    r.peak_bytes_per_s = spec.peak_bytes_per_s();
    std::vector<StreamItem> items(n);
    auto rate = [&](bool write) {
        for (std::uint64_t j = 0; j < n; ++j) items[j] = {write, burst_at(0, j)};
        const auto [ticks, bursts] = steady(run_closed_loop(spec, items));
        r.bursts_simulated += n;
        return bursts * static_cast<double>(burst) / (ticks * tick_s);  // one pseudo-channel
    };
    const double read_pc = rate(false);
    const double write_pc = rate(true);
    // Mixed: a packet's share of reads, then of writes, alternating.
    std::uint64_t reads = 0, writes = 0;
    for (std::uint64_t j = 0; j < n; ++j) {
        const bool write = (j / group) % 2 == 1;
        items[j] = {write, write ? burst_at(write_base, writes++) : burst_at(0, reads++)};
    }
    const auto [mixed_ticks, mixed_bursts] = steady(run_closed_loop(spec, items));
    r.bursts_simulated += n;
    const double mixed_s = mixed_ticks * tick_s;
    const double own_s = mixed_bursts / 2 * static_cast<double>(burst) * (1 / read_pc + 1 / write_pc);
    const double switches = mixed_bursts / static_cast<double>(group);
    r.turnaround_s = std::max(0.0, (mixed_s - own_s) / switches);
    // A write drain: the bursts between the watermarks on every pseudo-channel. What one pair of turns (to the
    // writes and back) costs: the mixed stream switches twice per packet share (group bursts); the controller
    // batches the writes of drain / group shares into one pair of turns when a share is the smaller, and
    // turns once per share (staying with the writes while no read waits) when it is the larger.
    const double drain_bursts = spec.controller.write_high - spec.controller.write_low;
    r.drain_bytes = drain_bursts * static_cast<double>(burst * pcs);
    r.drain_s = r.turnaround_s * 2.0 * std::max(1.0, drain_bursts / static_cast<double>(group));
    r.mixed_bytes_per_s = mixed_bursts * static_cast<double>(burst) / mixed_s * static_cast<double>(pcs);
    r.read_bytes_per_s = read_pc * static_cast<double>(pcs);
    r.write_bytes_per_s = write_pc * static_cast<double>(pcs);
    // Unloaded latency of one packet: its share of one idle pseudo-channel, rows closed.
    auto packet = [&](bool write) {
        std::vector<StreamItem> one(group);
        for (std::uint64_t j = 0; j < group; ++j) one[j] = {write, burst_at(0, j)};
        const auto done = run_closed_loop(spec, one);
        r.bursts_simulated += group;
        return static_cast<double>(*std::max_element(done.begin(), done.end())) * tick_s;
    };
    const double share = static_cast<double>(group * burst);
    r.read_queue_bytes = static_cast<double>(spec.controller.read_queue) * static_cast<double>(burst * pcs);
    r.write_queue_bytes = static_cast<double>(spec.controller.write_queue) * static_cast<double>(burst * pcs);
    r.packet_read_s = packet(false);
    r.packet_write_s = packet(true);
    r.read_latency_s = std::max(0.0, r.packet_read_s - share / read_pc);
    r.write_latency_s = std::max(0.0, r.packet_write_s - share / write_pc);
    return r;
}

const HbmRates& hbm_rates(const Config& config, std::uint64_t packet_bytes) {
    // The key: every resolved chip.memory.hbm.* value, the stack count and the packet size.
    std::string key = fmt::format("packet={};stacks={}", packet_bytes, config.get_int("chip.memory.stacks"));
    for (const auto& [k, v] : config.values())
        if (k.rfind("chip.memory.hbm.", 0) == 0) key += fmt::format(";{}={}", k, v.text);
    static std::mutex mutex;
    static std::map<std::string, HbmRates> memo;
    const std::lock_guard<std::mutex> lock(mutex);
    auto it = memo.find(key);
    if (it == memo.end()) {
        const int stacks = static_cast<int>(config.get_int("chip.memory.stacks"));
        it = memo.emplace(key, measure_hbm_rates(HbmSpec::from_config(config, stacks), packet_bytes)).first;
    }
    return it->second;
}

HbmTlMemory::HbmTlMemory(const sc_core::sc_module_name& name, const HbmRates& rates)
    : IMemory(name),
      m_rates(rates),
      m_fs_per_byte{1e15 / rates.read_bytes_per_s, 1e15 / rates.write_bytes_per_s},
      m_latency_fs{static_cast<std::uint64_t>(std::llround(rates.read_latency_s * 1e15)),
                   static_cast<std::uint64_t>(std::llround(rates.write_latency_s * 1e15))},
      m_queue_fs{static_cast<std::uint64_t>(std::llround(rates.read_queue_bytes * m_fs_per_byte[0])),
                 static_cast<std::uint64_t>(std::llround(rates.write_queue_bytes * m_fs_per_byte[1]))},
      m_drain_bytes(std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::llround(rates.drain_bytes)))),
      m_drain_fs(static_cast<std::uint64_t>(std::llround(rates.drain_s * 1e15))) {}

AccessTiming HbmTlMemory::timed_access(bool write, std::uint64_t bytes, std::uint64_t request) {
    const int dir = write ? 1 : 0;
    // Nearly every request is one packet: its time is computed once.
    if (bytes != m_last_bytes[dir]) {
        m_last_bytes[dir] = bytes;
        // Round-robin with the kernels' requests: the time they leave, and at least half.
        const double own_fs = static_cast<double>(bytes) * m_fs_per_byte[dir];
        const double u = m_kernel_load;
        const double share = std::max(1.0 - u, 0.5);
        m_last_duration[dir] = static_cast<std::uint64_t>(std::llround(own_fs / share));
        m_last_lag[dir] = u > 0.5 ? static_cast<std::uint64_t>(std::llround((2.0 * u - 1.0) * own_fs / u)) : 0;
    }
    std::uint64_t duration = m_last_duration[dir];
    m_stats.kernel_lag_fs += m_last_lag[dir];
    // Write drains cost turnarounds when reads are served around them; an idle memory has drained its queues.
    if (request >= m_free_fs) {
        m_written = 0;
        m_read = false;
    }
    if (!write) {
        m_read = true;
    } else {
        m_written += bytes;
        while (m_written >= m_drain_bytes) {
            m_written -= m_drain_bytes;
            if (m_read) duration += m_drain_fs;
            m_read = false;
        }
    }
    const std::uint64_t start = std::max(request, m_free_fs);
    m_free_fs = start + duration;
    m_stats.busy_fs += duration;
    ++m_stats.requests;
    (write ? m_stats.write_bytes : m_stats.read_bytes) += bytes;
    // The requester may send its next request once this one is in the controller's queue with what is
    // ahead of it: when the memory's backlog fits the queue.
    return {m_free_fs + m_latency_fs[dir], std::max(request, m_free_fs - std::min(m_free_fs, m_queue_fs[dir]))};
}

void HbmTlMemory::b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay) {
    transport_timed(*this, trans, delay);
}

void HbmTlMemory::set_kernel_load(double load) {
    if (load == m_kernel_load) return;
    m_kernel_load = load;
    m_last_bytes[0] = m_last_bytes[1] = ~std::uint64_t{0};  // the durations change with it
}

void HbmTlMemory::add_stats(const MemoryStats& d) {
    m_stats += d;
}

std::map<std::string, double> HbmTlMemory::summary() const {
    return {{"read_gbps", m_rates.read_bytes_per_s * 1e-9},
            {"write_gbps", m_rates.write_bytes_per_s * 1e-9},
            {"mixed_gbps", m_rates.mixed_bytes_per_s * 1e-9},
            {"turnaround_ns", m_rates.turnaround_s * 1e9},
            {"drain_bytes", m_rates.drain_bytes},
            {"drain_ns", m_rates.drain_s * 1e9},
            {"read_latency_ns", m_rates.read_latency_s * 1e9},
            {"write_latency_ns", m_rates.write_latency_s * 1e9}};
}

}  // namespace trnsim::hw
