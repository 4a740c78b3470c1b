#pragma once
// One direction of a point-to-point link (a NeuronLink lane group, a switch port, an EFA NIC path).
//
// Modelled: packets are serialized at `bandwidth`; each byte reaches the far end `latency` after it left
// (per-hop latency: wire, SerDes, the receiving port's pipeline). Packets wait in one FIFO per flow (a flow
// is one message); the link serves the flows round-robin, one packet at a time, among those whose packet
// head has arrived. Forwarding is virtual cut-through at packet granularity: a packet may start on the
// next hop as soon as its head arrives there (start + latency), and cannot finish there before its tail
// has arrived (end + latency). So a message over H uncontended hops of equal bandwidth takes
// H x latency + bytes / bandwidth, and packet k can be on hop 2 while packet k+1 is on hop 1.
// Abstracted away: flits, link-level credits and finite buffers between hops (those queues are unbounded,
// so there is no back-pressure across hops; only the sender is held back, by `PacketSource` credits at
// the first link), link-level retries, packet headers (a packet carries payload only).
// Events: one wake-up (wakeup.h) per packet per hop (plus one when an idle link receives work).

#include <cstdint>
#include <queue>
#include <string>
#include <vector>

#include <systemc>

#include "trnsim/hw/ring_queue.h"
#include "trnsim/hw/wakeup.h"

#include "trnsim/core/units.h"

namespace trnsim::hw {

struct LinkSpec {
    Bandwidth bandwidth;  // one direction
    Duration latency;     // per hop
};

struct Packet;

// Anything that accepts packets: a link's input, or a chip endpoint at the end of a route.
class PacketSink {
public:
    virtual ~PacketSink() = default;
    // Called at the current simulated time; `p.head_fs` / `p.tail_fs` say when the packet's first and last
    // byte are available at this sink's input (both >= now).
    virtual void accept(Packet* p) = 0;
};

// The sender of a packet, told when its packet starts on the first link of its route (a credit: the
// sender may queue another).
class PacketSource {
public:
    virtual ~PacketSource() = default;
    virtual void on_first_hop_start(Packet* p) = 0;
};

// A route: the sinks a packet visits in order; the last one is the destination endpoint.
using Route = std::vector<PacketSink*>;

// One cache line: a large cluster has hundreds of thousands of packets in flight, and the links' work on
// them is bound by the cache misses of reaching them.
struct alignas(64) Packet {
    std::uint64_t head_fs = 0;  // first byte available at the current sink's input
    std::uint64_t tail_fs = 0;  // last byte available there
    const Route* route = nullptr;
    void* message = nullptr;  // owner's bookkeeping (the endpoint's message)
    PacketSource* source = nullptr;
    // One entry per hop of the route, -1 initially, shared by the packets of a flow (one message): the
    // index of the flow's queue at that hop's link while it has one (so a link finds it without a lookup).
    std::int32_t* flow_slots = nullptr;
    Packet* next = nullptr;   // the link's queue of this flow
    std::uint32_t bytes = 0;  // at most cluster.link.packet (1 GiB)
    std::uint32_t hop = 0;    // index in *route of the sink the packet is at
};
static_assert(sizeof(Packet) == 64, "a packet is one cache line");

// Passes a packet to the next sink of its route.
inline void forward(Packet* p) {
    ++p->hop;
    (*p->route)[p->hop]->accept(p);
}

struct LinkStats {
    std::uint64_t bytes = 0;
    std::uint64_t packets = 0;
    std::uint64_t busy_fs = 0;  // time serializing (or streaming a packet whose tail arrives later)
};

class Link : public sc_core::sc_module, public PacketSink {
public:
    Link(const sc_core::sc_module_name& name, const LinkSpec& spec);

    void accept(Packet* p) override;

    const LinkSpec& spec() const { return m_spec; }
    const LinkStats& stats() const { return m_stats; }
    // Serialization time of `bytes` on this link, fs.
    std::uint64_t serialization_fs(std::uint64_t bytes) const;
    // No packet here or on its way in, and not sending at time `now_fs`.
    bool idle(std::uint64_t now_fs) const { return m_arriving.empty() && m_rotation.empty() && m_busy_until <= now_fs; }
    // Adds what a replayed stretch of traffic did on this link (CollectiveEngine's memo).
    void add_stats(const LinkStats& d);

private:
    struct Flow {
        Packet* head = nullptr;  // heads arrived, in order, linked through Packet::next
        Packet* tail = nullptr;
        std::int32_t* owner = nullptr;  // the flow's entry in Packet::flow_slots for this hop
    };
    struct Arrival {
        std::uint64_t head_fs;
        std::uint64_t seq;
        Packet* packet;
        bool operator>(const Arrival& o) const { return head_fs != o.head_fs ? head_fs > o.head_fs : seq > o.seq; }
    };

    void on_wake();
    // Moves the packets whose head has arrived by `now` into their flows' queues.
    void admit(std::uint64_t now);

    LinkSpec m_spec;
    double m_fs_per_byte;
    std::uint64_t m_latency_fs;
    std::uint64_t m_last_bytes = ~std::uint64_t{0};  // the last packet's size and its serialization time
    std::uint64_t m_last_serialization_fs = 0;
    LinkStats m_stats;
    Wakeup m_wake{[this] { on_wake(); }};
    std::uint64_t m_busy_until = 0;
    std::uint64_t m_seq = 0;
    // Packets whose head has not arrived yet, by head time (then arrival order).
    std::priority_queue<Arrival, std::vector<Arrival>, std::greater<Arrival>> m_arriving;
    std::vector<Flow> m_flows;  // slots; a flow holds one while it has packets here
    std::vector<std::int32_t> m_free_slots;
    RingQueue<std::int32_t> m_rotation;  // round-robin order of flows with ready packets
};

}  // namespace trnsim::hw
