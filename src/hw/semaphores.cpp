#include "trnsim/hw/semaphores.h"

#include <algorithm>

namespace trnsim::hw {

SemaphoreBank::SemaphoreBank(const sc_core::sc_module_name& name) : sc_core::sc_module(name) {
    SC_HAS_PROCESS(SemaphoreBank);
    SC_METHOD(on_wake);
    sensitive << m_wake;
    dont_initialize();
}

void SemaphoreBank::resize(std::size_t count) {
    m_counts.assign(count, 0);
    m_events.clear();
    for (std::size_t i = 0; i < count; ++i) m_events.push_back(std::make_unique<sc_core::sc_event>());
}

void SemaphoreBank::post(std::int32_t id, std::uint64_t at_fs) {
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    at_fs = std::max(at_fs, now);
    m_pending.push({at_fs, m_seq++, id});
    m_last_post_fs = std::max(m_last_post_fs, at_fs);
    if (at_fs < m_next_wake_fs) {
        m_next_wake_fs = at_fs;
        m_wake.notify(sc_core::sc_time::from_value(at_fs - now));
    }
}

void SemaphoreBank::on_wake() {
    ++m_wakeups;
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    while (!m_pending.empty() && m_pending.top().at_fs <= now) {
        const auto id = static_cast<std::size_t>(m_pending.top().id);
        m_pending.pop();
        ++m_counts[id];
        m_events[id]->notify(sc_core::SC_ZERO_TIME);
    }
    m_next_wake_fs = UINT64_MAX;
    if (!m_pending.empty()) {
        m_next_wake_fs = m_pending.top().at_fs;
        m_wake.notify(sc_core::sc_time::from_value(m_next_wake_fs - now));
    }
}

}  // namespace trnsim::hw
