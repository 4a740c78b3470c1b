#include "trnsim/hw/wakeup.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "trnsim/core/sim_context.h"

namespace trnsim::hw {

Wakeup::Wakeup(std::function<void()> callback) : m_callback(std::move(callback)), m_queue(&WakeupQueue::instance()) {}

std::string clock_range_text() {
    return fmt::format("{:.0f} s of simulated time (2^64 fs), the range of the simulator's clock",
                       std::ldexp(1.0, 64) * 1e-15);
}

bool past_clock(std::uint64_t now_fs, std::uint64_t delay_fs) {
    // 2^64 - 1 itself is no time either: it stands for "never" in the models.
    return delay_fs >= std::numeric_limits<std::uint64_t>::max() - now_fs;
}

std::string past_clock_message() {
    return "the simulation ran past " + clock_range_text() +
           ": sizes this large at rates this low (terabytes over a link of 100 MB/s, say) take that long";
}

void Wakeup::notify(std::uint64_t delay_fs) {
    const std::uint64_t now = WakeupQueue::now();
    if (past_clock(now, delay_fs)) {
        stop_simulation(past_clock_message());
        return;
    }
    const std::uint64_t at = now + delay_fs;
    if (m_due <= at) return;
    m_queue->schedule(*this, at);
}

WakeupQueue& WakeupQueue::instance() {
    // One elaboration per process (ADR 0001): created by the first model that needs it and kept for the
    // rest of the process, like the simulation context.
    static WakeupQueue* queue = new WakeupQueue("wakeup_queue");
    return *queue;
}

WakeupQueue::WakeupQueue(const sc_core::sc_module_name& name) : sc_core::sc_module(name) {
    sc_core::sc_spawn_options opts;
    opts.spawn_method();
    opts.set_sensitivity(&m_event);
    opts.dont_initialize();
    sc_core::sc_spawn([this] { run(); }, "run", &opts);
}

void WakeupQueue::schedule(Wakeup& w, std::uint64_t at_fs) {
    w.m_due = at_fs;
    w.m_seq = m_seq++;
    // An entry it had is left behind, stale (its request order is no longer the wake-up's), and dropped
    // when it comes up.
    m_queue.push({at_fs, w.m_seq, &w});
    if (m_running) return;  // run() arms the event for the earliest wake-up when it ends
    if (at_fs < m_armed) {
        const std::uint64_t now = WakeupQueue::now();
        m_armed = at_fs;
        if (at_fs == now)
            m_event.notify(sc_core::SC_ZERO_TIME);
        else
            m_event.notify(sc_core::sc_time::from_value(at_fs - now));
    }
}

void WakeupQueue::run() {
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    m_armed = ~std::uint64_t{0};
    m_running = true;
    s_now = now;
    s_running = true;
    Entry e;
    while (m_queue.take(now, e)) {
        Wakeup* w = e.target;
        if (e.seq != w->m_seq) continue;  // stale: the wake-up was requested again since
        w->m_due = kNone;
        ++s_wakeups;
        w->m_callback();
    }
    m_running = false;
    s_running = false;
    const std::uint64_t next = m_queue.earliest();
    if (next != kNone) {
        m_armed = next;
        m_event.notify(sc_core::sc_time::from_value(next - now));
    }
}

}  // namespace trnsim::hw
