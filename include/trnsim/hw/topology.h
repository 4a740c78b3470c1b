#pragma once
// The network of a cluster and the chips at its ends.
//
// - `Topology` (a family chosen by `cluster.topology`'s kind, registry below): builds the links and
//   switches of every node, the inter-node EFA network, and routes: a route from chip a to chip b is the
//   list of links (and switch ports) a packet crosses, ending at b's endpoint. Tori route in dimension
//   order, each dimension the short way round (ties: the + direction). It also publishes the facts that
//   topology-aware collective algorithms need (dimensions, coordinates, a Hamiltonian ring order).
// - `ChipEndpoint`: the chip's side of its links. It reads what it sends from the chip's memory with a
//   pool of DMA rings and writes what it receives into that memory, the rings adding it into the local data
//   when asked (docs/hw/interconnect.md, "Chip endpoint").
// - `Cluster`: per chip its memory (`cluster.memory_model`: the transaction-level HBM or the ideal memory),
//   its on-chip fabric and its endpoint (endpoint -> fabric -> memory, TLM), and the topology.

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include <tlm_utils/simple_initiator_socket.h>
#include <systemc>
#include <tlm>

#include "trnsim/core/config.h"
#include "trnsim/hw/cluster_spec.h"
#include "trnsim/hw/i_memory.h"
#include "trnsim/hw/link.h"
#include "trnsim/hw/network_switch.h"
#include "trnsim/hw/on_chip_fabric.h"
#include "trnsim/hw/ring_queue.h"
#include "trnsim/hw/wakeup.h"

namespace trnsim::hw {

// A link as reports name it.
struct NamedLink {
    std::string name;  // e.g. "n0.c3.x+", "n0.c3.up", "n0.l1g2.port1", "efa.port17"
    const Link* link = nullptr;
};

class Topology {
public:
    explicit Topology(const ClusterSpec& spec);
    virtual ~Topology() = default;
    Topology(const Topology&) = delete;
    Topology& operator=(const Topology&) = delete;

    // Creates every link and switch; `endpoints[c]` is chip c's endpoint (chips numbered node-major).
    void build(const std::vector<PacketSink*>& endpoints);
    // The route from chip `src` to chip `dst` (cached); empty when src == dst.
    const Route& route(int src, int dst);
    const std::vector<NamedLink>& links() const { return m_links; }
    // The link of links()[i], to add replayed counters to (CollectiveEngine's memo).
    Link& mutable_link(std::size_t i) { return const_cast<Link&>(*m_links.at(i).link); }
    // Nodes are alike: every link belongs to a node and plays a part (a role) in it, the same in every node;
    // link_at(n, role) is node n's link of that part (k_no_link past the nodes). A link's role is its name
    // without the node ("n3.c5.x+" -> ".c5.x+"; the EFA port of chip c -> that of its local chip).
    static constexpr std::size_t k_no_link = ~std::size_t{0};
    int link_node(std::size_t i) const { return m_link_node.at(i); }
    std::size_t link_role(std::size_t i) const { return m_link_role.at(i); }
    std::size_t link_at(int node, std::size_t role) const;

    int nodes() const { return m_spec.nodes; }
    int chips_per_node() const { return m_spec.chips_per_node(); }
    int chips() const { return m_spec.chips(); }
    const std::string& kind() const { return m_spec.topology.kind; }
    // Torus (or ring) dimensions of one node; empty for the switched and fully connected kinds.
    virtual std::vector<int> torus_dims() const { return {}; }
    // Coordinates of a chip within its node (torus kinds), dimension 0 first.
    std::vector<int> coords(int local_chip) const;
    // Local chips of one node in an order where consecutive chips are neighbours (a Hamiltonian path; a
    // cycle when the last is also a neighbour of the first). Identity for the switched kinds.
    virtual std::vector<int> ring_order() const;

    // Maps of a node onto itself that keep every link's spec: a permutation of the node's chips (local
    // numbers) and the matching one of link roles, the same in every node. Tori give every translation
    // combined with every reflection of dimensions (a reflection turns + links into - links); the other
    // kinds the identity alone. Identity first. They need not carry routes onto routes (a ring of 4 breaks
    // ties towards +, which a reflection does not keep): the collective engine's memo names every hop
    // (runtime/collective_engine.h, "Frames").
    struct NodeMap {
        std::vector<int> chip;          // local chip -> local chip
        std::vector<std::size_t> role;  // link role -> link role
    };
    const std::vector<NodeMap>& node_maps() const { return m_node_maps; }

protected:
    // The chip permutations behind node_maps() and, per dimension, whether each reflects it.
    struct ChipMap {
        std::vector<int> chip;
        std::vector<bool> reflects;
    };
    virtual std::vector<ChipMap> chip_maps() const;
    void build_node_maps(const std::map<std::string, std::size_t>& roles);
    // Builds node `node`'s links; `first_chip` is its chip 0.
    virtual void build_node(int node, int first_chip) = 0;
    // Appends the hops from local chip `a` to local chip `b` of node `node` (a != b).
    virtual void intra_route(int node, int a, int b, Route& out) const = 0;
    Link& add_link(const std::string& name, const LinkSpec& spec);
    NetworkSwitch& add_switch(const std::string& name, const SwitchSpec& spec);
    void add_switch_ports(const std::string& name, const NetworkSwitch& sw);

    ClusterSpec m_spec;

private:
    std::vector<PacketSink*> m_endpoints;
    std::vector<std::unique_ptr<Link>> m_owned_links;
    std::vector<std::unique_ptr<NetworkSwitch>> m_switches;
    std::vector<NamedLink> m_links;
    std::vector<int> m_link_node;                       // per link: its node
    std::vector<std::size_t> m_link_role;               // per link: its part within its node
    std::vector<std::vector<std::size_t>> m_role_link;  // per node, per part: the link
    std::vector<NodeMap> m_node_maps;
    std::vector<Link*> m_nic;  // per chip: uplink to the EFA network (nodes > 1)
    NetworkSwitch* m_efa = nullptr;
    std::vector<std::unique_ptr<Route>> m_routes;  // src * chips + dst
};

using TopologyFactory = std::function<std::unique_ptr<Topology>(const ClusterSpec&)>;
void register_topology(const std::string& kind, TopologyFactory factory);
// Registers the built-in kinds (ring, torus2d, torus3d, full, switch, switch2) on first use.
std::unique_ptr<Topology> make_topology(const ClusterSpec& spec);
std::vector<std::string> topology_kinds();

// What the endpoint needs from the chip's config: its DMA engines. The collective cores drive DMA rings;
// the compute engines take no part [CC-OVERLAP], and the DMA engines do the reductions [NKI-ARCH3].
struct EndpointSpec {
    int dma_rings = 1;         // chip.cores: one ring of DMA engines per NeuronCore
    int engines_per_ring = 1;  // chip.core.dma.engines
    Bandwidth engine_bandwidth;
    Duration descriptor_cost;   // per packet (one DMA buffer per engine)
    Duration transfer_latency;  // per message, before its first packet moves
    double reduce_rate = 1;     // chip.core.dma.reduce_rate: reduction throughput / copy throughput
    int rank_rings = 1;         // rings per rank: chip.cores / cluster.ranks_per_chip (at least 1)
    std::uint64_t packet_bytes = 65536;
    int credits = 2;  // packets of one message that may wait at its first link
    // The DMA packet size of each collective stream (0: tensor-parallel and the rest, 1: data-parallel;
    // cluster.cc.packet, cluster.cc.dp_packet): the engines switch queues only at packet boundaries, so a
    // queue's share of them goes with its packet size [CC-OVERLAP].
    std::array<std::uint64_t, 2> cc_packet{65536, 65536};
    // chip.core.dma.arbitration = strict-priority (Trn3 [CC-OVERLAP]): a ring serves stream 0's queues
    // before any of stream 1's, instead of both in one rotation; the packet sizes then set no shares
    // between the streams (against the kernels each stream keeps its round-robin share, packet_dma_fs).
    bool strict_priority = false;

    static EndpointSpec from_config(const Config& config);
};

// One point-to-point transfer between chips (or within one chip, when `route` is empty).
struct Message {
    int src_chip = 0;
    int dst_chip = 0;
    // Whose DMA rings move it: the sending and the receiving rank's places on their chips (0 ..
    // ranks_per_chip - 1), and the collective stream (CC-Core channel) it belongs to, -1 for none.
    int src_slot = 0;
    int dst_slot = 0;
    int channel = -1;
    int stream = 0;  // the collective stream: its DMA packet size (EndpointSpec::cc_packet)
    std::uint64_t bytes = 0;
    bool reduce = false;  // the receiver adds the data into its own (a reduce-scatter step)
    const Route* route = nullptr;
    std::function<void(std::uint64_t)> on_done;  // called at the time the last byte is in memory (reduced)
    // Endpoint bookkeeping.
    std::uint64_t ready_fs = 0;
    std::uint64_t unsent = 0;
    std::uint64_t packets_left = 0;
    std::uint64_t done_fs = 0;
    int ring = 0;
    int reducer = -1;  // the receiving chip's DMA ring that adds it (assigned when its first packet arrives)
    std::uint32_t reduce_next = 0;  // without a channel: the receiver's ring for the next packet, from `reducer`
    std::uint64_t credit = 0;       // its queue's bytes of turns not yet used (the ring's deficit round-robin)
    int in_window = 0;              // packets handed to the first link and not yet started there
    bool parked = false;            // out of its ring's rotation until a credit returns
    // Per hop, for the links (Packet::flow_slots): in the message itself for routes of up to 8 hops (every
    // torus and switch route here), so that a link's lookup touches the message's line, not another
    // allocation. A message in flight must stay where it is (its packets point into it).
    std::int32_t* flow_slots = nullptr;
    std::array<std::int32_t, 8> short_slots{};
    std::vector<std::int32_t> long_slots;
};

struct EndpointStats {
    std::uint64_t messages_sent = 0;
    std::uint64_t bytes_sent = 0;
    std::uint64_t bytes_received = 0;
    std::uint64_t bytes_reduced = 0;
    std::uint64_t packets_sent = 0;
    std::uint64_t dma_busy_fs = 0;  // summed over rings: sending and reducing
    // Summed over rings: how far the chip's kernels fell behind for the engine time the collectives' packets
    // took from them (packet_dma_fs).
    std::uint64_t kernel_lag_fs = 0;
};

class PacketPool {
public:
    Packet* get();
    void put(Packet* p) { m_free.push_back(p); }

private:
    std::deque<Packet> m_storage;
    std::vector<Packet*> m_free;
};

class ChipEndpoint : public sc_core::sc_module, public PacketSink, public PacketSource {
public:
    tlm_utils::simple_initiator_socket<ChipEndpoint> memory_port;

    ChipEndpoint(const sc_core::sc_module_name& name, const EndpointSpec& spec, PacketPool& pool);

    // Starts a message at the current time: after transfer_latency its packets are read from memory by
    // one of the chip's DMA rings (round-robin between the messages on that ring) and injected into the
    // route's first link, at most `credits` of them waiting there at a time.
    void send(Message* m);
    // A packet arriving at this chip (head and tail times at the chip).
    void accept(Packet* p) override;
    // Restarts the round-robin assignment of channel-less streams (messages to send or to reduce) to their
    // rank's DMA rings: done when traffic starts on the idle chip, so that a result does not depend on what
    // ran before.
    void restart_assignment() { std::fill(m_next_ring.begin(), m_next_ring.end(), 0); }
    // Nothing to send, receive, reduce or write at time `now_fs`.
    bool idle(std::uint64_t now_fs) const;
    // Adds what a replayed stretch of traffic did at this endpoint.
    void add_stats(const EndpointStats& d);
    // The share of the chip's DMA engine time its running kernels take (0..1, the kernels' own DMA
    // utilization). The engines serve their queues round-robin at packet boundaries (NC-v2/v3, [NKI-DMA],
    // [CC-OVERLAP]): a packet started now gets the time the kernels leave, and at least its share of turns
    // against kernel packets of stream 0's size, so its DMA time is stretched by 1 / max(1 - load, p / (p +
    // cc_packet[0])) (1/2 for stream 0); kernels wanting more than that leaves them fall behind
    // (EndpointStats::kernel_lag_fs, packet_dma_fs).
    void set_dma_load(double load);
    double dma_load() const { return m_dma_load; }
    // The direct path to what memory_port is bound to (the fabric), when it offers one (i_memory.h): memory
    // accesses then skip the TLM transport, with the same timing.
    void set_direct_memory(ITimedAccess* target) { m_direct_memory = target; }
    // A packet of this chip started on its first link: its message may queue another.
    void on_first_hop_start(Packet* p) override;

    const EndpointStats& stats() const { return m_stats; }
    const EndpointSpec& spec() const { return m_spec; }

private:
    // A ring's engines serve its queues round-robin, switching only at packet boundaries [CC-OVERLAP]: the
    // messages it sends, and per stream its queue of received packets to reduce while it holds any. A turn
    // moves one packet of the queue's stream's DMA packet size; the model moves whole simulated packets
    // (cluster.link.packet), as a deficit round-robin (Shreedhar and Varghese 1996): each turn credits the
    // queue its stream's packet bytes, and the queue moves a simulated packet once its credit covers it. So
    // queues share the ring in proportion to their streams' packet sizes, as the engines' packets do. Under
    // strict priority (Trn3) a stream-1 queue gets a turn only when no stream-0 queue is active.
    struct Turn {
        Message* message = nullptr;  // a message to send; nullptr: the reduction queue of `stream`
        int stream = 0;
    };
    struct Ring {
        RingQueue<Message*> pending;            // waiting for transfer_latency, in ready order
        RingQueue<Turn> active;                 // in round-robin order (strict priority: stream 0's first)
        std::array<Packet*, 2> reduce_first{};  // per stream: received packets to reduce, in arrival order
        std::array<Packet*, 2> reduce_last{};
        std::array<std::uint64_t, 2> reduce_credit{};
        std::unique_ptr<Wakeup> wake;
        std::uint64_t busy_until = 0;
    };
    struct Work {
        std::uint64_t at_fs;
        std::uint64_t seq;
        int kind;  // 0: packet tail arrived, 1: reduced data ready to write, 2: message complete
        Packet* packet;
        Message* message;
        bool operator>(const Work& o) const { return at_fs != o.at_fs ? at_fs > o.at_fs : seq > o.seq; }
    };

    // The ring that moves a stream (a message to send, or one to reduce) of the rank at `slot` on this chip,
    // one of the rank's own (its NeuronCores'): a channel's CC-Core drives one ring, channel c the rank's
    // ring c mod rank_rings (consecutive channels on different cores, both directions of ring-bidir on
    // each); a stream without a channel takes the rank's rings in turn.
    int stream_ring(int slot, int channel);
    void ring_wake(int r);
    void ring_step(Ring& g, std::uint64_t now);
    // An idle ring takes its next turn at once; a busy one wakes when it is free.
    void serve(Ring& g, std::uint64_t now);
    // A ring's turn: reads message m's next packet for sending (`sent`, to inject once the ring is marked
    // busy), or reduces the first received packet of its queue; returns the ring's busy time.
    std::uint64_t send_packet(Ring& g, Message* m, std::uint64_t now, Packet*& sent);
    std::uint64_t reduce_packet(Ring& g, int stream, std::uint64_t now);
    // The ring's next turn that moves a packet (deficit round-robin; or, under strict priority, the first
    // stream-0 queue in the rotation, else its front); rotates the queues up to it.
    Turn next_turn(Ring& g);
    void on_work();
    void schedule(const Work& w);
    void packet_done(Message* m, std::uint64_t done_fs);
    // Issues one memory access at the current time `now`; returns when its data are delivered, and in
    // `accept_fs` when the memory can take the next request.
    std::uint64_t memory_access(bool write, std::uint64_t bytes, std::uint64_t now, std::uint64_t* accept_fs = nullptr);
    // DMA-ring time to read and send a packet of `bytes`, or (`reduce`) to add a received one into the
    // local data, under the current DMA load, for a packet of `stream`; computed once per distinct input
    // (nearly every packet is a full one).
    std::uint64_t packet_dma_fs(std::uint64_t bytes, bool reduce, int stream);

    EndpointSpec m_spec;
    PacketPool& m_pool;
    std::vector<std::unique_ptr<Ring>> m_rings;
    int m_slots = 1;               // rank places with rings of their own: chip.cores / rank_rings
    bool m_weighted = false;       // a stream's DMA packets are smaller than a simulated packet (next_turn)
    std::vector<int> m_next_ring;  // per rank place: the ring (of its own) of its next channel-less stream
    double m_dma_load = 0;
    double m_ring_fs_per_byte;
    std::uint64_t m_descriptor_fs;
    std::uint64_t m_transfer_fs;
    std::priority_queue<Work, std::vector<Work>, std::greater<Work>> m_work;
    std::uint64_t m_seq = 0;
    Wakeup m_work_event{[this] { on_work(); }};
    struct DmaCache {
        std::uint64_t bytes = ~std::uint64_t{0};
        double load = 0;
        std::uint64_t fs = 0;
        std::uint64_t lag = 0;
    } m_dma_cache[2][2];  // [sending, reducing][stream]
    ITimedAccess* m_direct_memory = nullptr;
    tlm::tlm_generic_payload m_request;
    MemoryTiming* m_timing = nullptr;  // owned by m_request
    bool m_memory_done = false;
    std::uint64_t m_memory_done_fs = 0;
    std::uint64_t m_last_done = 0;
    EndpointStats m_stats;
};

// What a chip's running kernels take of the resources its collectives share with them: the DMA engines'
// time and the memory's (each 0..1).
struct KernelLoad {
    double dma = 0;
    double memory = 0;
    bool operator==(const KernelLoad& o) const { return dma == o.dma && memory == o.memory; }
    bool operator!=(const KernelLoad& o) const { return !(*this == o); }
    bool operator<(const KernelLoad& o) const { return dma != o.dma ? dma < o.dma : memory < o.memory; }
    bool idle() const { return dma == 0 && memory == 0; }
};

// How far a chip's kernels fell behind for the DMA engine and memory time its collectives took from them
// (the counters EndpointStats::kernel_lag_fs, summed over the chip's rings, and MemoryStats::kernel_lag_fs).
struct KernelLag {
    std::uint64_t dma_fs = 0;
    std::uint64_t memory_fs = 0;
    KernelLag operator+(const KernelLag& o) const { return {dma_fs + o.dma_fs, memory_fs + o.memory_fs}; }
    KernelLag operator-(const KernelLag& o) const { return {dma_fs - o.dma_fs, memory_fs - o.memory_fs}; }
    bool operator==(const KernelLag& o) const { return dma_fs == o.dma_fs && memory_fs == o.memory_fs; }
};

// Everything a chip counts during collectives: its endpoint, its memory and its fabric.
struct ChipStats {
    EndpointStats endpoint;
    MemoryStats memory;
    FabricStats fabric;
    KernelLag lag() const { return {endpoint.kernel_lag_fs, memory.kernel_lag_fs}; }
};
// a - b, counter by counter.
ChipStats operator-(const ChipStats& a, const ChipStats& b);

class Cluster : public sc_core::sc_module {
public:
    Cluster(const sc_core::sc_module_name& name, const ClusterSpec& spec, const Config& config);

    const ClusterSpec& spec() const { return m_spec; }
    Topology& topology() { return *m_topology; }
    const Topology& topology() const { return *m_topology; }
    ChipEndpoint& endpoint(int chip) { return *m_endpoints.at(static_cast<std::size_t>(chip)); }
    const ChipEndpoint& endpoint(int chip) const { return *m_endpoints.at(static_cast<std::size_t>(chip)); }
    const IMemory& memory(int chip) const { return *m_memories.at(static_cast<std::size_t>(chip)); }
    const OnChipFabric& fabric(int chip) const { return *m_fabrics.at(static_cast<std::size_t>(chip)); }
    int chips() const { return m_spec.chips(); }
    // The chip's endpoint, fabric and memory have nothing in flight or queued at `now_fs`.
    bool chip_idle(int chip, std::uint64_t now_fs) const;
    ChipStats chip_stats(int chip) const;
    KernelLag kernel_lag(int chip) const;
    // Adds what a replayed stretch of traffic did on the chip (CollectiveEngine's memo).
    void add_chip_stats(int chip, const ChipStats& d);
    // From now on the chip's kernels take `load` (ChipEndpoint::set_dma_load, IMemory::set_kernel_load).
    void set_kernel_load(int chip, const KernelLoad& load);
    const KernelLoad& kernel_load(int chip) const { return m_kernel_load.at(static_cast<std::size_t>(chip)); }

private:
    ClusterSpec m_spec;
    PacketPool m_pool;
    std::vector<std::unique_ptr<IMemory>> m_memories;
    std::vector<std::unique_ptr<OnChipFabric>> m_fabrics;
    std::vector<std::unique_ptr<ChipEndpoint>> m_endpoints;
    std::vector<KernelLoad> m_kernel_load;
    std::unique_ptr<Topology> m_topology;
};

}  // namespace trnsim::hw
