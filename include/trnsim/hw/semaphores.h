#pragma once
// Hardware semaphores between the engines and DMA queues of a NeuronCore [NKI-ARCH1]: counters that
// instructions increment on completion and wait on before issue. An increment is posted for the absolute
// time the producing instruction completes and becomes visible then.

#include <cstdint>
#include <memory>
#include <queue>
#include <vector>

#include <systemc>

namespace trnsim::hw {

class SemaphoreBank : public sc_core::sc_module {
public:
    explicit SemaphoreBank(const sc_core::sc_module_name& name);

    void resize(std::size_t count);
    std::int64_t count(std::int32_t id) const { return m_counts[static_cast<std::size_t>(id)]; }
    const sc_core::sc_event& changed(std::int32_t id) const { return *m_events[static_cast<std::size_t>(id)]; }
    // Increment semaphore `id` by one at absolute time `at_fs` (not before the current time).
    void post(std::int32_t id, std::uint64_t at_fs);
    std::uint64_t last_post_fs() const { return m_last_post_fs; }
    std::uint64_t wakeups() const { return m_wakeups; }

private:
    void on_wake();

    struct Pending {
        std::uint64_t at_fs;
        std::uint64_t seq;
        std::int32_t id;
        bool operator>(const Pending& o) const { return at_fs != o.at_fs ? at_fs > o.at_fs : seq > o.seq; }
    };
    std::vector<std::int64_t> m_counts;
    std::vector<std::unique_ptr<sc_core::sc_event>> m_events;
    std::priority_queue<Pending, std::vector<Pending>, std::greater<Pending>> m_pending;
    sc_core::sc_event m_wake;
    std::uint64_t m_next_wake_fs = UINT64_MAX;
    std::uint64_t m_seq = 0;
    std::uint64_t m_last_post_fs = 0;
    std::uint64_t m_wakeups = 0;
};

}  // namespace trnsim::hw
