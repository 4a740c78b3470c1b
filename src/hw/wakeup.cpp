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

void WakeupQueue::place(std::size_t i, const Entry& e) {
    m_heap[i] = e;
    e.target->m_pos = static_cast<std::int64_t>(i);
}

void WakeupQueue::sift_up(std::size_t i) {
    const Entry e = m_heap[i];
    while (i > 0) {
        const std::size_t parent = (i - 1) / 2;
        if (!(e < m_heap[parent])) break;
        place(i, m_heap[parent]);
        i = parent;
    }
    place(i, e);
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
        place(i, m_heap[child]);
        i = child;
    }
    place(i, e);
}

void WakeupQueue::schedule(Wakeup& w, std::uint64_t at_fs) {
    // A wake-up whose callback is running is still at the root (not pending: m_due is none); its new key is
    // later than the one it ran at, so it moves down. Any other pending wake-up is only ever made earlier.
    const bool running = w.m_pos >= 0 && w.m_due == kNone;
    w.m_due = at_fs;
    w.m_seq = m_seq++;
    if (w.m_pos < 0) {
        m_heap.push_back({at_fs, w.m_seq, &w});
        sift_up(m_heap.size() - 1);
    } else {
        const auto i = static_cast<std::size_t>(w.m_pos);
        m_heap[i].due = at_fs;
        m_heap[i].seq = w.m_seq;
        if (running)
            sift_down(i);
        else
            sift_up(i);
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
        // The callback runs with its entry left at the root: everything requested meanwhile is due later
        // (or now, requested later), so the entry stays the least. When the callback requests its own next
        // wake-up (a link's next packet, a ring's next read: the common case), the entry is re-keyed and
        // sifted down once instead of popped and pushed again.
        Wakeup* w = m_heap.front().target;
        w->m_due = kNone;
        w->m_callback();
        if (w->m_due == kNone) {
            const Entry last = m_heap.back();
            m_heap.pop_back();
            if (!m_heap.empty() && last.target != w) {
                place(0, last);
                sift_down(0);
            }
            w->m_pos = -1;
        }
    }
    m_running = false;
    s_running = false;
    if (!m_heap.empty()) {
        m_armed = m_heap.front().due;
        m_event.notify(sc_core::sc_time::from_value(m_armed - now));
    }
}

}  // namespace trnsim::hw
