#include "trnsim/hw/link.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace trnsim::hw {

Link::Link(const sc_core::sc_module_name& name, const LinkSpec& spec)
    : sc_core::sc_module(name),
      m_spec(spec),
      m_fs_per_byte(1e15 / spec.bandwidth.bytes_per_s),
      m_latency_fs(static_cast<std::uint64_t>(std::llround(spec.latency.seconds * 1e15))) {
    sc_core::sc_spawn_options opts;
    opts.spawn_method();
    opts.set_sensitivity(&m_wake);
    opts.dont_initialize();
    sc_core::sc_spawn([this] { on_wake(); }, "serializer", &opts);
}

std::uint64_t Link::serialization_fs(std::uint64_t bytes) const {
    return static_cast<std::uint64_t>(std::llround(static_cast<double>(bytes) * m_fs_per_byte));
}

void Link::accept(Packet* p) {
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    Flow& flow = m_flows[p->flow];
    flow.packets.push_back(p);
    if (!flow.in_rotation) {
        flow.in_rotation = true;
        m_rotation.push_back(p->flow);
        m_stats.max_flows = std::max<std::uint64_t>(m_stats.max_flows, m_rotation.size());
    }
    // A busy link wakes when its current packet ends; an idle one when this packet's head arrives.
    if (m_busy_until <= now) m_wake.notify(sc_core::sc_time::from_value(std::max(p->head_fs, now) - now));
}

void Link::on_wake() {
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    if (m_busy_until > now) {
        m_wake.notify(sc_core::sc_time::from_value(m_busy_until - now));
        return;
    }
    // Round-robin over the flows with queued packets; a flow whose head has not arrived keeps its turn
    // for later and goes to the back.
    std::uint64_t earliest = std::numeric_limits<std::uint64_t>::max();
    for (std::size_t i = 0, n = m_rotation.size(); i < n; ++i) {
        const std::uint64_t id = m_rotation.front();
        m_rotation.pop_front();
        auto it = m_flows.find(id);
        Packet* p = it->second.packets.front();
        if (p->head_fs > now) {
            earliest = std::min(earliest, p->head_fs);
            m_rotation.push_back(id);
            continue;
        }
        it->second.packets.pop_front();
        if (it->second.packets.empty())
            m_flows.erase(it);
        else
            m_rotation.push_back(id);
        const std::uint64_t end = std::max(now + serialization_fs(p->bytes), p->tail_fs);
        m_busy_until = end;
        m_stats.busy_fs += end - now;
        m_stats.bytes += p->bytes;
        ++m_stats.packets;
        p->head_fs = now + m_latency_fs;
        p->tail_fs = end + m_latency_fs;
        forward(p);
        m_wake.notify(sc_core::sc_time::from_value(end - now));
        return;
    }
    if (earliest != std::numeric_limits<std::uint64_t>::max())
        m_wake.notify(sc_core::sc_time::from_value(earliest - now));
}

}  // namespace trnsim::hw
