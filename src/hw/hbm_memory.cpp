#include "trnsim/hw/hbm_memory.h"

#include <algorithm>

#include <fmt/format.h>

#include "trnsim/core/error.h"

namespace trnsim::hw {

HbmMemory::HbmMemory(const sc_core::sc_module_name& name, const HbmSpec& spec)
    : IMemory(name), m_spec(spec), m_map(spec.org, spec.stacks, spec.map), m_ticks(spec.tick_hz()) {
    const auto burst = static_cast<std::uint64_t>(spec.org.burst_bytes);
    if ((burst & (burst - 1)) == 0) {
        m_burst_mask = burst - 1;
        while ((std::uint64_t{1} << m_burst_shift) < burst) ++m_burst_shift;
    }
    const int n = spec.pseudo_channels_total();
    m_logs.resize(spec.check_timing ? static_cast<std::size_t>(n) : 0);
    m_outstanding.assign(static_cast<std::size_t>(n), 0);
    m_next.assign(static_cast<std::size_t>(n), UINT64_MAX);
    m_waiters.assign(static_cast<std::size_t>(n), 0);
    for (int i = 0; i < n; ++i) {
        m_channels.push_back(std::make_unique<dram::PseudoChannel>(spec.org, spec.timing, spec.controller));
        if (spec.check_timing) m_channels.back()->set_command_log(&m_logs[static_cast<std::size_t>(i)]);
    }
    SC_HAS_PROCESS(HbmMemory);
    SC_METHOD(on_wake);
    sensitive << m_wake;
    dont_initialize();
}

void HbmMemory::advance(std::size_t c, std::uint64_t until_tick) {
    auto& channel = *m_channels[c];
    if (channel.now() >= until_tick) return;  // up to date: every issued RD/WR has been reported
    const bool reads_full = !channel.can_accept(false);
    const bool writes_full = !channel.can_accept(true);
    // Completions are reported as soon as their RD/WR has issued: their ticks are final then, and every
    // initiator takes a completion time in the future (i_memory.h).
    channel.run_until_taking_issued(until_tick, m_done);
    m_outstanding[c] -= m_done.size();
    for (const auto& d : m_done) {
        if (d.id & kDirect) {  // a one-burst request sent with a tag: its id is the tag
            m_done_fn(m_done_ctx, d.id & ~kDirect, m_ticks.edge_fs(static_cast<std::int64_t>(d.tick)));
            continue;
        }
        Transaction& t = m_transactions[d.id];
        t.done_fs = std::max(t.done_fs, m_ticks.edge_fs(static_cast<std::int64_t>(d.tick)));
        if (--t.bursts_left == 0) {
            if (t.tag != kNoTag) {  // sent with a tag: to the sink
                const std::uint64_t tag = t.tag, done = t.done_fs;
                m_free_transactions.push_back(d.id);
                m_done_fn(m_done_ctx, tag, done);
                continue;
            }
            std::function<void(std::uint64_t)> callback;
            callback.swap(t.on_done);  // leaves the free transaction without one, as b_transport expects
            const std::uint64_t done = t.done_fs;
            m_free_transactions.push_back(d.id);
            if (callback) callback(done);
        }
    }
    m_done.clear();
    update_next(c);
    // Senders wait only on a full queue: wake them when one of those gained room. (A single sender waits in
    // hold_until_room for the tick its queue gains room.)
    if (!m_single_sender && ((reads_full && channel.can_accept(false)) || (writes_full && channel.can_accept(true)))) {
        m_space.notify(sc_core::SC_ZERO_TIME);
    }
}

void HbmMemory::update_next(std::size_t c) {
    // The channel must be looked at again by the time a completion could fall due: a RD/WR issuing at the
    // next command tick d completes at d + min(CL, CWL) + BL at the earliest, so commands up to then can be
    // simulated in one go (nothing reaches the channel meanwhile except through b_transport, which brings
    // it up to date first). A channel with a sender waiting for queue space is looked at on every command
    // tick instead, since the tick a slot frees is the tick that sender's request arrives.
    // A channel without work never needs a wake-up (UINT64_MAX): on_wake then skips it without looking at
    // its count of outstanding bursts.
    if (m_outstanding[c] == 0) {
        m_next[c] = UINT64_MAX;
        return;
    }
    const auto& channel = *m_channels[c];
    const std::uint64_t d = channel.next_command_tick();
    m_next[c] = m_waiters[c] > 0 || d == UINT64_MAX ? d : d + channel.min_completion_ticks();
}

void HbmMemory::wake_for(std::size_t c) {
    wake_at(m_next[c]);  // UINT64_MAX for a channel without work: no wake-up
}

void HbmMemory::wake_at(std::uint64_t tick) {
    // Only an earlier wake-up than the one pending needs a notification; on_wake rescans every channel.
    if (tick >= m_wake_tick) return;
    m_wake_tick = tick;
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    const std::uint64_t at = m_ticks.edge_fs(static_cast<std::int64_t>(tick));
    m_wake.notify(sc_core::sc_time::from_value(at > now ? at - now : 0));
}

std::uint64_t HbmMemory::current_tick() {
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    if (now != m_tick_fs) {  // many requests arrive at one time: convert it once
        m_tick_fs = now;
        m_tick = static_cast<std::uint64_t>(m_ticks.cycle_at_or_after(now));
    }
    return m_tick;
}

void HbmMemory::on_wake() {
    wake_up(current_tick());
}

void HbmMemory::wake_up(std::uint64_t now_tick) {
    m_wake_tick = UINT64_MAX;
    // Everything due at or before this tick; then the earliest event of any busy channel (advancing one
    // channel leaves the others' next ticks as they are).
    std::uint64_t next = UINT64_MAX;
    for (std::size_t c = 0; c < m_channels.size(); ++c) {
        if (m_next[c] <= now_tick) advance(c, now_tick + 1);
        next = std::min(next, m_next[c]);
    }
    if (next != UINT64_MAX) wake_at(next);
}

// The single sender (set_single_sender) waits for room in queue `write` of channel c, which is full at the
// current tick T. In the event-by-event model, channel c is then advanced at every command tick (update_next),
// and the sender resumes after the wake-up of the tick t at which that queue gains room (its request arriving
// at t + 1, the channel having decided tick t), once that wake-up has advanced every channel due at t. Until
// then no request arrives anywhere, and what the wake-ups in between do (advance channels, report completions,
// wake the sender for room elsewhere, where it finds none and waits again: no effect) is seen by nobody: the
// sender is the only initiator, and its completion callbacks only record. So all of it is done here at once,
// channel by channel: channel c by each of its command ticks until the queue has room (finding t), and every
// other channel by each wake-up it is due at before t, exactly as those wake-ups would advance it (a channel's
// timeline does not depend on how its runs are split, but its current tick does: it decides whether a request
// arriving at t arrives at t or t + 1). Then the sender waits until t and does that wake-up's work itself
// (wake_up): the channels due at t are advanced before its next request, as before. One SystemC wait per
// stretch instead of a wake-up per command tick of c and per channel due; the same timeline, the same
// completion ticks, the same arrivals.
void HbmMemory::hold_until_room(std::size_t c, bool write) {
    auto& channel = *m_channels[c];
    std::uint64_t room = UINT64_MAX;
    while (room == UINT64_MAX) {
        const std::uint64_t d = channel.next_command_tick();
        if (d == UINT64_MAX) throw std::logic_error("hbm: a full queue without a command to issue");
        advance(c, d + 1);
        if (channel.can_accept(write)) room = d;
    }
    for (std::size_t k = 0; k < m_channels.size(); ++k) {
        while (m_next[k] < room) advance(k, m_next[k] + 1);
    }
    // Wake-ups pending before `room` have nothing left to do; the one at `room` is the sender's.
    m_wake.cancel();
    m_wake_tick = UINT64_MAX;
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    sc_core::wait(sc_core::sc_time::from_value(m_ticks.edge_fs(static_cast<std::int64_t>(room)) - now));
    wake_up(room);
}

void HbmMemory::finish(std::uint64_t end_fs) {
    m_end_fs = std::min<std::uint64_t>(end_fs, sc_core::sc_time_stamp().value());
    const auto now_tick = static_cast<std::uint64_t>(m_ticks.cycle_at_or_after(m_end_fs));
    for (std::size_t c = 0; c < m_channels.size(); ++c) advance(c, now_tick);
}

void HbmMemory::b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay) {
    transport(trans, kNoTag);
    delay = sc_core::SC_ZERO_TIME;
}

void HbmMemory::transport(tlm::tlm_generic_payload& trans, std::uint64_t tag) {
    if (tag != kNoTag && !m_done_fn) throw std::logic_error("hbm: send() without a completion sink");
    const bool write = trans.is_write();
    const std::uint64_t bytes = trans.get_data_length();
    const std::uint64_t burst = static_cast<std::uint64_t>(m_spec.org.burst_bytes);
    const std::uint64_t capacity = m_map.capacity_bytes();
    auto* timing = trans.get_extension<MemoryTiming>();

    // Bursts are a power of two bytes in every part; any other size divides.
    const std::uint64_t first =
        m_burst_mask ? trans.get_address() & ~m_burst_mask : trans.get_address() / burst * burst;
    const std::uint64_t end = trans.get_address() + std::max<std::uint64_t>(bytes, 1);
    const std::uint64_t span = end - first + burst - 1;
    const auto bursts = static_cast<int>(m_burst_mask ? span >> m_burst_shift : span / burst);
    std::uint64_t id;
    if (bursts == 1 && tag < kDirect) {
        // One burst with a tag: nothing to gather, so the burst carries the tag and no transaction is kept.
        id = tag | kDirect;
    } else {
        if (!m_free_transactions.empty()) {
            id = m_free_transactions.back();
            m_free_transactions.pop_back();
        } else {
            id = m_transactions.size();
            m_transactions.emplace_back();
        }
        Transaction& t = m_transactions[id];
        t.bursts_left = bursts;
        t.done_fs = 0;
        t.tag = tag;
        // Taken, not copied: an initiator sets on_done afresh for every request. (A free transaction has
        // none, so a swap takes it and leaves the extension's empty.)
        if (timing && tag == kNoTag) t.on_done.swap(timing->on_done);
    }
    std::uint64_t arrival_tick = 0;
    auto tick = current_tick();
    for (std::uint64_t a = first; a < end; a += burst) {
        // Addresses beyond the modelled capacity wrap: the map covers the organisation's bytes.
        const dram::Decoded d = m_map.decode(a < capacity ? a : a % capacity);
        const std::size_t c = static_cast<std::size_t>(
            (d.stack * m_spec.org.channels + d.channel) * m_spec.org.pseudo_channels + d.pseudo_channel);
        auto& channel = *m_channels[c];
        for (;;) {
            advance(c, tick);
            // A full queue may free a slot at this very tick; the request can take it from the next tick on,
            // exactly as after waiting for it.
            if (!channel.can_accept(write)) advance(c, tick + 1);
            if (channel.can_accept(write)) {
                // A tick whose decisions the controller has made already is over for this request.
                const std::uint64_t arrival = std::max(tick, channel.now());
                channel.enqueue({id, write, d.sid, d.bank_group, d.bank, d.row, d.column, arrival});
                arrival_tick = std::max(arrival_tick, arrival);
                ++m_outstanding[c];
                update_next(c);
                wake_for(c);
                break;
            }
            // Back-pressure: the queue is full; wait until some queue gains room.
            ++m_waiters[c];
            update_next(c);
            if (m_single_sender) {
                hold_until_room(c, write);
            } else {
                wake_for(c);
                sc_core::wait(m_space);
            }
            --m_waiters[c];
            tick = current_tick();
        }
    }
    ++m_stats.requests;
    (write ? m_stats.write_bytes : m_stats.read_bytes) += bytes;
    if (timing) {
        timing->accept_delay = sc_core::SC_ZERO_TIME;
        timing->arrival_fs = m_ticks.edge_fs(static_cast<std::int64_t>(arrival_tick));
    }
    trans.set_response_status(tlm::TLM_OK_RESPONSE);
}

HbmReport HbmMemory::report() const {
    HbmReport r;
    const double tick_s = 1.0 / m_spec.tick_hz();
    const auto& e = m_spec.energy;
    double latency_sum = 0;
    const auto end_tick = static_cast<std::uint64_t>(
        m_ticks.cycle_at_or_after(std::min<std::uint64_t>(m_end_fs, sc_core::sc_time_stamp().value())));
    for (std::size_t c = 0; c < m_channels.size(); ++c) {
        const auto& s = m_channels[c]->stats();
        r.reads += s.reads;
        r.writes += s.writes;
        r.row_hits += s.row_hits;
        r.row_misses += s.row_misses;
        r.row_conflicts += s.row_conflicts;
        r.acts += s.acts;
        r.refreshes += s.refs_ab + s.refs_pb;
        latency_sum += s.latency_sum;
        const double ticks = static_cast<double>(std::max<std::uint64_t>(end_tick, 1));
        // Share of bank time blocked by refresh (all-bank: tRFC/tREFI; per-bank: tRFCpb/tREFIpb per bank).
        const double banks = static_cast<double>(m_spec.org.sids * m_spec.org.bank_groups * m_spec.org.banks_per_group);
        r.refresh_share += static_cast<double>(s.refresh_bank_ticks) / (ticks * banks);
        const double refresh =
            static_cast<double>(s.refs_ab) * e.ref_ab_j + static_cast<double>(s.refs_pb) * e.ref_pb_j;
        const double background = static_cast<double>(s.active_ticks) * tick_s * e.active_standby_w +
                                  static_cast<double>(s.precharged_ticks) * tick_s * e.precharge_standby_w;
        const double commands = static_cast<double>(s.acts) * e.act_j + static_cast<double>(s.reads) * e.rd_j +
                                static_cast<double>(s.writes) * e.wr_j;
        const double io = static_cast<double>(s.reads + s.writes) * m_spec.org.burst_bytes * 8 * e.io_per_bit_j;
        r.energy_j += refresh + background + commands + io;
        r.energy_refresh_j += refresh;
        r.energy_background_j += background;
    }
    r.refresh_share /= static_cast<double>(std::max<std::size_t>(m_channels.size(), 1));
    r.seconds = static_cast<double>(end_tick) * tick_s;
    const double served = static_cast<double>(r.reads + r.writes);
    r.bytes = served * m_spec.org.burst_bytes;
    r.mean_latency_ns = served > 0 ? latency_sum / served * tick_s * 1e9 : 0;
    if (m_spec.check_timing) {
        const dram::TimingChecker checker(m_spec.org, m_spec.timing);
        for (std::size_t c = 0; c < m_logs.size(); ++c) {
            const auto v = checker.check(m_logs[c]);
            r.timing_violations += v.size();
            for (const auto& msg : v) {
                if (r.violation_samples.size() < 5) r.violation_samples.push_back(fmt::format("pc {}: {}", c, msg));
            }
        }
    }
    return r;
}

std::map<std::string, double> HbmMemory::summary() const {
    const HbmReport r = report();
    // The energy of the accesses (commands and I/O), and the power that goes with time whatever the accesses
    // (background and refresh), per stack: a step charges the two apart (docs/training.md, "Energy").
    const double standby_j = r.energy_background_j + r.energy_refresh_j;
    return {{"energy_j", r.energy_j},
            {"access_energy_j", r.energy_j - standby_j},
            {"standby_w_per_stack", r.seconds > 0 ? standby_j / r.seconds / m_spec.stacks : 0.0},
            {"energy_pj_per_bit", r.pj_per_bit()},
            {"row_hit_rate", r.row_hit_rate()},
            {"refresh_share", r.refresh_share},
            {"mean_latency_ns", r.mean_latency_ns},
            {"activates", static_cast<double>(r.acts)},
            {"timing_violations", static_cast<double>(r.timing_violations)}};
}

void register_hbm_memory() {
    register_memory_model("hbm", [](const sc_core::sc_module_name& n, const Config& c, const MemoryContext& ctx) {
        // A kernel's core reaches its local stacks: stacks / cores sharing, at least one.
        const int stacks = static_cast<int>(c.get_int("chip.memory.stacks"));
        const int local = std::max(1, stacks / std::max(1, ctx.cores_sharing));
        return std::make_unique<HbmMemory>(n, HbmSpec::from_config(c, ctx.whole_chip ? stacks : local));
    });
}

}  // namespace trnsim::hw
