#include "trnsim/hw/link.h"

#include <algorithm>
#include <cmath>

namespace trnsim::hw {

Link::Link(const sc_core::sc_module_name& name, const LinkSpec& spec)
    : sc_core::sc_module(name),
      m_spec(spec),
      m_fs_per_byte(1e15 / spec.bandwidth.bytes_per_s),
      m_latency_fs(static_cast<std::uint64_t>(std::llround(spec.latency.seconds * 1e15))) {}

std::uint64_t Link::serialization_fs(std::uint64_t bytes) const {
    return static_cast<std::uint64_t>(static_cast<double>(bytes) * m_fs_per_byte + 0.5);
}

void Link::add_stats(const LinkStats& d) {
    m_stats.bytes += d.bytes;
    m_stats.packets += d.packets;
    m_stats.busy_fs += d.busy_fs;
}

void Link::accept(Packet* p) {
    const std::uint64_t now = WakeupQueue::now();
    m_arriving.push({p->head_fs, m_seq++, p});
    // A busy link wakes when its current packet ends; an idle one when this packet's head arrives.
    if (m_busy_until <= now) m_wake.notify(std::max(p->head_fs, now) - now);
}

void Link::admit(std::uint64_t now) {
    while (!m_arriving.empty() && m_arriving.top().head_fs <= now) {
        Packet* p = m_arriving.top().packet;
        m_arriving.pop();
        p->next = nullptr;
        std::int32_t& slot = p->flow_slots[p->hop];
        if (slot < 0) {
            if (m_free_slots.empty()) {
                slot = static_cast<std::int32_t>(m_flows.size());
                m_flows.emplace_back();
            } else {
                slot = m_free_slots.back();
                m_free_slots.pop_back();
            }
            Flow& f = m_flows[static_cast<std::size_t>(slot)];
            f.head = f.tail = p;
            f.owner = &slot;
            m_rotation.push_back(slot);
        } else {
            Flow& f = m_flows[static_cast<std::size_t>(slot)];
            f.tail->next = p;
            f.tail = p;
        }
    }
}

void Link::on_wake() {
    const std::uint64_t now = WakeupQueue::now();
    if (m_busy_until > now) {
        m_wake.notify(m_busy_until - now);
        return;
    }
    admit(now);
    if (m_rotation.empty()) {
        if (!m_arriving.empty()) m_wake.notify(m_arriving.top().head_fs - now);
        return;
    }
    // Round-robin over the flows with a packet whose head has arrived: the front flow sends one packet and
    // goes to the back while it has more.
    const std::int32_t slot = m_rotation.front();
    m_rotation.pop_front();
    Flow& flow = m_flows[static_cast<std::size_t>(slot)];
    Packet* p = flow.head;
    flow.head = p->next;
    if (flow.head == nullptr) {
        *flow.owner = -1;
        flow.tail = nullptr;
        m_free_slots.push_back(slot);
    } else {
        m_rotation.push_back(slot);
    }
    if (p->bytes != m_last_bytes) {
        m_last_bytes = p->bytes;
        m_last_serialization_fs = serialization_fs(p->bytes);
    }
    const std::uint64_t end = std::max(now + m_last_serialization_fs, p->tail_fs);
    m_busy_until = end;
    m_stats.busy_fs += end - now;
    m_stats.bytes += p->bytes;
    ++m_stats.packets;
    p->head_fs = now + m_latency_fs;
    p->tail_fs = end + m_latency_fs;
    if (p->hop == 0 && p->source != nullptr) p->source->on_first_hop_start(p);
    forward(p);
    m_wake.notify(end - now);
}

}  // namespace trnsim::hw
