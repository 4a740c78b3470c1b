#pragma once
// Timed wake-ups of the interconnect models (links, DMA rings, chip endpoints) through one shared event
// queue instead of one sc_event and one SystemC process each. `Wakeup::notify(delay)` has sc_event's
// semantics (a pending earlier wake-up stands; an earlier one replaces a later one), and the callback runs
// at that time; wake-ups falling due at the same time run in the order they were (last) requested. The
// queue is a binary heap with inline, branch-free comparisons of (due, request order) as one 128-bit key. A
// wake-up whose callback requests its next one (the common case) is re-keyed at the root and moved down
// once, not popped and pushed; one made earlier while pending gets a new entry and leaves its old one
// behind, stale, dropped when it reaches the root. Entries do not track their wake-up's position: a sift
// moves entries only, without a write into each moved wake-up (an indexed heap was ~20% slower on a
// cluster step). SystemC's own timed-event queue, with an entry per sc_event, cost half of a cluster
// simulation's time. (A 4-ary heap was slower: the lesser of four children costs more than it saves in
// levels.)
// Keys (due time, request order) are unique, so the order in which wake-ups run does not depend on the
// heap's shape.

#include <cstdint>
#include <functional>
#include <vector>

#include <systemc>

namespace trnsim::hw {

class WakeupQueue;

class Wakeup {
public:
    explicit Wakeup(std::function<void()> callback);
    Wakeup(const Wakeup&) = delete;
    Wakeup& operator=(const Wakeup&) = delete;

    // Wake up `delay_fs` after the current time (unless already due earlier or at that time).
    void notify(std::uint64_t delay_fs);

private:
    friend class WakeupQueue;
    std::function<void()> m_callback;
    std::uint64_t m_due = ~std::uint64_t{0};  // pending wake-up time, or none
    std::uint64_t m_seq = 0;                  // order of the request, for wake-ups due at the same time
    WakeupQueue* m_queue;
};

// One per simulation (created on first use, during elaboration).
class WakeupQueue : public sc_core::sc_module {
public:
    static WakeupQueue& instance();
    // The current simulated time, fs: sc_time_stamp(), read once per activation of the queue (the models
    // ask for it several times per wake-up, and sc_time_stamp is a call into the SystemC library).
    static std::uint64_t now() { return s_running ? s_now : sc_core::sc_time_stamp().value(); }
    void schedule(Wakeup& w, std::uint64_t at_fs);  // at_fs earlier than w's pending wake-up, if any

private:
    explicit WakeupQueue(const sc_core::sc_module_name& name);
    void run();
    // Heap entries carry their keys, so that sifting reads contiguous memory.
    struct Entry {
        std::uint64_t due, seq;
        Wakeup* target;
        // Due time, then request order, compared as one 128-bit key (no branch: the outcome is a coin toss).
        bool operator<(const Entry& o) const { return key() < o.key(); }
        unsigned __int128 key() const { return static_cast<unsigned __int128>(due) << 64 | seq; }
    };
    void sift_up(std::size_t i);
    void sift_down(std::size_t i);
    void pop_root();

    static constexpr std::uint64_t kNone = ~std::uint64_t{0};

    std::vector<Entry> m_heap;
    std::uint64_t m_seq = 0;
    std::uint64_t m_armed = ~std::uint64_t{0};  // the time m_event is notified for
    bool m_running = false;                     // inside run(): wake-ups due now are taken by its loop
    Wakeup* m_current = nullptr;                // the wake-up whose callback is running
    static inline bool s_running = false;       // inside run() of the (one) queue, at time s_now
    static inline std::uint64_t s_now = 0;
    sc_core::sc_event m_event;
};

}  // namespace trnsim::hw
