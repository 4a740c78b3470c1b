#include "trnsim/hw/wakeup.h"

#include <algorithm>

namespace trnsim::hw {

Wakeup::Wakeup(std::function<void()> callback) : m_callback(std::move(callback)), m_queue(&WakeupQueue::instance()) {}

void Wakeup::notify(std::uint64_t delay_fs) {
    const std::uint64_t at = WakeupQueue::now() + delay_fs;
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

void WakeupQueue::sift_up(std::size_t i) {
    const Entry e = m_heap[i];
    while (i > 0) {
        const std::size_t parent = (i - 1) / 2;
        if (!(e < m_heap[parent])) break;
        m_heap[i] = m_heap[parent];
        i = parent;
    }
    m_heap[i] = e;
}

void WakeupQueue::sift_down(std::size_t i) {
    const Entry e = m_heap[i];
    const std::size_t n = m_heap.size();
    for (;;) {
        std::size_t child = 2 * i + 1;
        if (child >= n) break;
        // The lesser child without a branch: which one it is, is a coin toss.
        if (child + 1 < n) child += static_cast<std::size_t>(m_heap[child + 1] < m_heap[child]);
        if (!(m_heap[child] < e)) break;
        m_heap[i] = m_heap[child];
        i = child;
    }
    m_heap[i] = e;
}

void WakeupQueue::pop_root() {
    const Entry last = m_heap.back();
    m_heap.pop_back();
    if (m_heap.empty()) return;
    m_heap[0] = last;
    sift_down(0);
}

void WakeupQueue::schedule(Wakeup& w, std::uint64_t at_fs) {
    w.m_due = at_fs;
    w.m_seq = m_seq++;
    // The running wake-up's entry is at the root (everything else is due later, or now but requested later):
    // run() re-keys it there once its callback returns. Any other wake-up gets a new entry; one it had is
    // left behind, stale (its request order is no longer the wake-up's), and dropped when it comes up.
    if (&w != m_current) {
        m_heap.push_back({at_fs, w.m_seq, &w});
        sift_up(m_heap.size() - 1);
    }
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
    while (!m_heap.empty() && m_heap.front().due <= now) {
        Wakeup* w = m_heap.front().target;
        if (m_heap.front().seq != w->m_seq) {  // stale: the wake-up was requested again since
            pop_root();
            continue;
        }
        // The callback runs with its entry left at the root. When it requests its own next wake-up (a link's
        // next packet, a ring's next read: the common case), the entry is re-keyed and sifted down once
        // instead of popped and pushed again.
        w->m_due = kNone;
        m_current = w;
        w->m_callback();
        m_current = nullptr;
        if (w->m_due == kNone) {
            pop_root();
        } else {
            m_heap.front().due = w->m_due;
            m_heap.front().seq = w->m_seq;
            sift_down(0);
        }
    }
    m_running = false;
    s_running = false;
    // Stale entries at the root would only arm a wake-up for nothing: drop them first.
    while (!m_heap.empty() && m_heap.front().seq != m_heap.front().target->m_seq) pop_root();
    if (!m_heap.empty()) {
        m_armed = m_heap.front().due;
        m_event.notify(sc_core::sc_time::from_value(m_armed - now));
    }
}

}  // namespace trnsim::hw
