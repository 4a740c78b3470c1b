#include "trnsim/hw/topology.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "trnsim/core/error.h"
#include "trnsim/hw/hbm_tl_memory.h"

namespace trnsim::hw {

// ---------------------------------------------------------------------------------------------------
// Topology: common part (nodes, EFA, route cache)

Topology::Topology(const ClusterSpec& spec) : m_spec(spec) {}

Link& Topology::add_link(const std::string& name, const LinkSpec& spec) {
    m_owned_links.push_back(std::make_unique<Link>(sc_core::sc_gen_unique_name("link"), spec));
    m_links.push_back({name, m_owned_links.back().get()});
    return *m_owned_links.back();
}

NetworkSwitch& Topology::add_switch(const std::string& name, const SwitchSpec& spec) {
    m_switches.push_back(std::make_unique<NetworkSwitch>(sc_core::sc_gen_unique_name("switch"), spec));
    add_switch_ports(name, *m_switches.back());
    return *m_switches.back();
}

void Topology::add_switch_ports(const std::string& name, const NetworkSwitch& sw) {
    for (int i = 0; i < sw.spec().ports; ++i) m_links.push_back({fmt::format("{}.port{}", name, i), &sw.output(i)});
}

void Topology::build(const std::vector<PacketSink*>& endpoints) {
    m_endpoints = endpoints;
    const int per_node = chips_per_node();
    for (int n = 0; n < nodes(); ++n) build_node(n, n * per_node);
    if (nodes() > 1) {
        for (int c = 0; c < chips(); ++c) {
            m_nic.push_back(&add_link(fmt::format("n{}.c{}.nic", c / per_node, c % per_node),
                                      LinkSpec{m_spec.efa.bandwidth, Duration{0}}));
        }
        m_efa = &add_switch("efa", SwitchSpec{chips(), m_spec.efa.bandwidth, m_spec.efa.latency});
    }
    m_routes.resize(static_cast<std::size_t>(chips()) * static_cast<std::size_t>(chips()));
    // Every node's links, by their part in the node: the name without the node ("n3.c5.x+" -> "c5.x+"; the EFA
    // port of chip c -> its local chip).
    std::map<std::string, std::size_t> roles;
    m_role_link.assign(static_cast<std::size_t>(nodes()), {});
    for (std::size_t i = 0; i < m_links.size(); ++i) {
        const std::string& name = m_links[i].name;
        int node = -1;
        std::string role;
        std::size_t digits = 0;
        if (name.rfind("efa.port", 0) == 0) {
            const int chip = std::stoi(name.substr(8));
            node = chip / per_node;
            role = fmt::format("efa.port{}", chip % per_node);
        } else if (name.size() > 1 && name[0] == 'n' && (digits = name.find('.')) != std::string::npos) {
            node = std::stoi(name.substr(1, digits - 1));
            role = name.substr(digits);
        }
        if (node < 0) throw std::logic_error("topology: link " + name + " belongs to no node");
        m_link_node.push_back(node);
        const std::size_t id = roles.emplace(role, roles.size()).first->second;
        m_link_role.push_back(id);
        auto& at = m_role_link[static_cast<std::size_t>(node)];
        if (at.size() <= id) at.resize(id + 1, k_no_link);
        at[id] = i;
    }
    build_node_maps(roles);
}

// A role names its chip as ".c<local>." (or "efa.port<local>"); a map moves that chip and, for a
// reflected dimension, turns the direction of its links ("x+" <-> "x-"). A map that leaves a role without
// an image, or gives a link one of another spec, is dropped.
void Topology::build_node_maps(const std::map<std::string, std::size_t>& roles) {
    // Each role as (its chip, the rest of its name): ".c5.x+" -> (5, ".x+"), "efa.port5" -> (5, "efa.port");
    // a role that names no chip (a switch port) has chip -1. The rest is numbered, and a table gives the
    // role of every (rest, chip), so that a map's image of a role is two lookups.
    const std::size_t n = roles.size();
    std::vector<int> chip(n, -1);
    std::vector<std::size_t> rest(n);
    std::map<std::string, std::size_t> rests;
    for (const auto& [name, id] : roles) {
        std::string r = name;
        if (name.rfind("efa.port", 0) == 0) {
            chip[id] = std::stoi(name.substr(8));
            r = "efa.port";
        } else if (name.rfind(".c", 0) == 0 && name.find('.', 2) != std::string::npos) {
            const std::size_t dot = name.find('.', 2);
            chip[id] = std::stoi(name.substr(2, dot - 2));
            r = name.substr(dot);  // ".x+", ".nic", ".up1"
        }
        rest[id] = rests.emplace(r, rests.size()).first->second;
    }
    // Per rest: the rest with its direction turned (".x+" <-> ".x-"), or none, and the dimension it runs along.
    static const std::string axes = "xyz";
    constexpr std::size_t none = ~std::size_t{0};
    std::vector<std::size_t> turned(rests.size(), none), axis(rests.size(), none);
    for (const auto& [r, id] : rests) {
        if (r.size() != 3 || (r[2] != '+' && r[2] != '-')) continue;
        axis[id] = axes.find(r[1]);
        std::string t = r;
        t[2] = r[2] == '+' ? '-' : '+';
        const auto it = rests.find(t);
        if (it != rests.end()) turned[id] = it->second;
    }
    const int per_node = chips_per_node();
    std::vector<std::size_t> role_of(rests.size() * static_cast<std::size_t>(per_node + 1), none);
    const auto slot = [&](std::size_t r, int c) {
        return r * static_cast<std::size_t>(per_node + 1) + static_cast<std::size_t>(c + 1);
    };
    for (std::size_t id = 0; id < n; ++id) role_of[slot(rest[id], chip[id])] = id;
    std::set<std::vector<int>> seen;
    m_node_maps.clear();
    for (const ChipMap& cm : chip_maps()) {
        if (!seen.insert(cm.chip).second) continue;
        bool identity = true;
        for (std::size_t c = 0; c < cm.chip.size(); ++c) identity = identity && cm.chip[c] == static_cast<int>(c);
        NodeMap m;
        m.chip = cm.chip;
        bool ok = true;
        for (std::size_t id = 0; id < n && ok; ++id) {
            std::size_t r = rest[id];
            const std::size_t d = axis[r];
            if (d != none && d < cm.reflects.size() && cm.reflects[d]) r = turned[r];
            // A role that names no chip stays itself: only the identity keeps it.
            const int c = chip[id] < 0 ? -1 : cm.chip.at(static_cast<std::size_t>(chip[id]));
            const std::size_t image = r == none || (chip[id] < 0 && !identity) ? none : role_of[slot(r, c)];
            ok = image != none;
            if (ok) {
                const Link* a = m_links[link_at(0, id)].link;
                const Link* b = m_links[link_at(0, image)].link;
                ok = a->spec().bandwidth.bytes_per_s == b->spec().bandwidth.bytes_per_s &&
                     a->spec().latency.seconds == b->spec().latency.seconds;
                m.role.push_back(image);
            }
        }
        if (ok) m_node_maps.push_back(std::move(m));
    }
}

std::vector<Topology::ChipMap> Topology::chip_maps() const {
    ChipMap id;
    for (int c = 0; c < chips_per_node(); ++c) id.chip.push_back(c);
    return {id};
}

std::size_t Topology::link_at(int node, std::size_t role) const {
    if (node < 0 || node >= nodes()) return k_no_link;
    const auto& at = m_role_link[static_cast<std::size_t>(node)];
    return role < at.size() ? at[role] : k_no_link;
}

const Route& Topology::route(int src, int dst) {
    auto& slot =
        m_routes[static_cast<std::size_t>(src) * static_cast<std::size_t>(chips()) + static_cast<std::size_t>(dst)];
    if (slot) return *slot;
    slot = std::make_unique<Route>();
    if (src != dst) {
        const int per_node = chips_per_node();
        if (src / per_node == dst / per_node) {
            intra_route(src / per_node, src % per_node, dst % per_node, *slot);
        } else {
            slot->push_back(m_nic[static_cast<std::size_t>(src)]);
            slot->push_back(&m_efa->output(dst));
        }
        slot->push_back(m_endpoints[static_cast<std::size_t>(dst)]);
    }
    return *slot;
}

std::vector<int> Topology::coords(int local_chip) const {
    std::vector<int> c;
    for (int d : torus_dims()) {
        c.push_back(local_chip % d);
        local_chip /= d;
    }
    return c;
}

std::vector<int> Topology::ring_order() const {
    std::vector<int> order(static_cast<std::size_t>(chips_per_node()));
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
    return order;
}

namespace {

// ---------------------------------------------------------------------------------------------------
// ring:N, torus2d:AxB, torus3d:AxBxC: each chip links to its two neighbours in every dimension (one when
// the dimension has size 2), both directions. Dimensions 0 and 1 use cluster.link, dimension 2
// cluster.zlink (trn2-ultraserver: the ring of 4 across instances).

class TorusTopology : public Topology {
public:
    explicit TorusTopology(const ClusterSpec& spec) : Topology(spec), m_dims(spec.topology.dims) {}

    std::vector<int> torus_dims() const override { return m_dims; }

    // Reflected mixed-radix Gray order (boustrophedon): consecutive chips differ by one step in one
    // dimension; with an even size in the last dimension of size > 1 the last chip neighbours the first.
    std::vector<int> ring_order() const override {
        std::vector<std::vector<int>> seq{{}};
        for (int size : m_dims) {
            std::vector<std::vector<int>> next;
            for (int v = 0; v < size; ++v) {
                for (std::size_t i = 0; i < seq.size(); ++i) {
                    auto c = v % 2 == 0 ? seq[i] : seq[seq.size() - 1 - i];
                    c.push_back(v);
                    next.push_back(std::move(c));
                }
            }
            seq = std::move(next);
        }
        std::vector<int> order;
        for (const auto& c : seq) order.push_back(index(c));
        return order;
    }

protected:
    int index(const std::vector<int>& c) const {
        int idx = 0, stride = 1;
        for (std::size_t d = 0; d < m_dims.size(); ++d) {
            idx += c[d] * stride;
            stride *= m_dims[d];
        }
        return idx;
    }

    void build_node(int node, int first_chip) override {
        const int per_node = chips_per_node();
        const std::size_t nd = m_dims.size();
        if (m_dir.empty()) m_dir.resize(static_cast<std::size_t>(chips()) * nd * 2, nullptr);
        static const char* axis = "xyz";
        for (int local = 0; local < per_node; ++local) {
            const auto c = coords(local);
            for (std::size_t d = 0; d < nd; ++d) {
                const int size = m_dims[d];
                if (size == 1) continue;
                const LinkSpec& spec = d >= 2 ? m_spec.zlink : m_spec.link;
                Link* plus = &add_link(fmt::format("n{}.c{}.{}+", node, local, axis[d]), spec);
                Link* minus = size == 2 ? plus : &add_link(fmt::format("n{}.c{}.{}-", node, local, axis[d]), spec);
                m_dir[slot(first_chip + local, d, 0)] = plus;
                m_dir[slot(first_chip + local, d, 1)] = minus;
            }
        }
    }

    void intra_route(int node, int a, int b, Route& out) const override {
        auto cur = coords(a);
        const auto dst = coords(b);
        const int base = node * chips_per_node();
        for (std::size_t d = 0; d < m_dims.size(); ++d) {
            const int size = m_dims[d];
            const int delta = (dst[d] - cur[d] + size) % size;
            if (delta == 0) continue;
            const bool plus = 2 * delta <= size;
            const int steps = plus ? delta : size - delta;
            for (int s = 0; s < steps; ++s) {
                out.push_back(m_dir[slot(base + index(cur), d, plus ? 0 : 1)]);
                cur[d] = (cur[d] + (plus ? 1 : size - 1)) % size;
            }
        }
    }

    // Every translation, each with every set of reflected dimensions (of size > 2; reflecting a ring of
    // two is the identity), identity first.
    std::vector<ChipMap> chip_maps() const override {
        const std::size_t nd = m_dims.size();
        std::vector<ChipMap> maps;
        for (int t = 0; t < chips_per_node(); ++t) {
            const auto shift = coords(t);
            for (unsigned mask = 0; mask < (1u << nd); ++mask) {
                bool valid = true;
                for (std::size_t d = 0; d < nd; ++d) valid = valid && (!(mask >> d & 1u) || m_dims[d] > 2);
                if (!valid) continue;
                ChipMap m;
                for (std::size_t d = 0; d < nd; ++d) m.reflects.push_back((mask >> d & 1u) != 0);
                for (int c = 0; c < chips_per_node(); ++c) {
                    auto x = coords(c);
                    for (std::size_t d = 0; d < nd; ++d) {
                        const int v = m.reflects[d] ? m_dims[d] - x[d] : x[d];
                        x[d] = (v + shift[d]) % m_dims[d];
                    }
                    m.chip.push_back(index(x));
                }
                maps.push_back(std::move(m));
            }
        }
        return maps;
    }

private:
    std::size_t slot(int chip, std::size_t d, int dir) const {
        return (static_cast<std::size_t>(chip) * m_dims.size() + d) * 2 + static_cast<std::size_t>(dir);
    }

    std::vector<int> m_dims;
    std::vector<Link*> m_dir;  // (chip, dimension, +/-) -> link leaving the chip
};

// full:N: a dedicated cluster.link from every chip to every other chip.
class FullTopology : public Topology {
public:
    using Topology::Topology;

protected:
    void build_node(int node, int first_chip) override {
        const int n = chips_per_node();
        if (m_links.empty()) m_links.resize(static_cast<std::size_t>(chips()) * static_cast<std::size_t>(n), nullptr);
        for (int a = 0; a < n; ++a) {
            for (int b = 0; b < n; ++b) {
                if (a == b) continue;
                m_links[static_cast<std::size_t>(first_chip + a) * static_cast<std::size_t>(n) +
                        static_cast<std::size_t>(b)] = &add_link(fmt::format("n{}.c{}->c{}", node, a, b), m_spec.link);
            }
        }
    }
    void intra_route(int node, int a, int b, Route& out) const override {
        const int n = chips_per_node();
        out.push_back(m_links[static_cast<std::size_t>(node * n + a) * static_cast<std::size_t>(n) +
                              static_cast<std::size_t>(b)]);
    }

private:
    std::vector<Link*> m_links;
};

// switch:N -- one switch per node (cluster.switch.l1); switch2:GxC -- per node, G first-level switches of
// C ports (one per group of C chips, cluster.switch.l1) and one second-level switch over all G x C chips
// (cluster.switch.l2). Each chip has an uplink to each level it is attached to, at that level's port
// bandwidth with cluster.link.latency. Within a group packets cross the first level, between groups the
// second: two hops either way.
class SwitchedTopology : public Topology {
public:
    SwitchedTopology(const ClusterSpec& spec, bool two_level) : Topology(spec), m_two_level(two_level) {}

protected:
    void build_node(int node, int first_chip) override {
        const int n = chips_per_node();
        const int group = m_two_level ? m_spec.topology.dims[1] : n;
        const int groups = n / group;
        if (m_up1.empty()) {
            m_up1.resize(static_cast<std::size_t>(chips()), nullptr);
            m_up2.resize(static_cast<std::size_t>(chips()), nullptr);
        }
        NodeSwitches sw;
        for (int g = 0; g < groups; ++g) {
            SwitchSpec s = m_spec.l1;
            s.ports = group;
            sw.l1.push_back(
                &add_switch(m_two_level ? fmt::format("n{}.l1g{}", node, g) : fmt::format("n{}.sw", node), s));
        }
        if (m_two_level) {
            SwitchSpec s = m_spec.l2;
            s.ports = n;
            sw.l2 = &add_switch(fmt::format("n{}.l2", node), s);
        }
        for (int c = 0; c < n; ++c) {
            m_up1[static_cast<std::size_t>(first_chip + c)] =
                &add_link(fmt::format("n{}.c{}.up{}", node, c, m_two_level ? "1" : ""),
                          LinkSpec{m_spec.l1.port_bandwidth, m_spec.link.latency});
            if (m_two_level) {
                m_up2[static_cast<std::size_t>(first_chip + c)] = &add_link(
                    fmt::format("n{}.c{}.up2", node, c), LinkSpec{m_spec.l2.port_bandwidth, m_spec.link.latency});
            }
        }
        m_nodes.push_back(std::move(sw));
    }

    void intra_route(int node, int a, int b, Route& out) const override {
        const int n = chips_per_node();
        const int group = m_two_level ? m_spec.topology.dims[1] : n;
        const auto& sw = m_nodes[static_cast<std::size_t>(node)];
        const std::size_t src = static_cast<std::size_t>(node * n + a);
        if (a / group == b / group) {
            out.push_back(m_up1[src]);
            out.push_back(&sw.l1[static_cast<std::size_t>(a / group)]->output(b % group));
        } else {
            out.push_back(m_up2[src]);
            out.push_back(&sw.l2->output(b));
        }
    }

private:
    struct NodeSwitches {
        std::vector<NetworkSwitch*> l1;
        NetworkSwitch* l2 = nullptr;
    };
    bool m_two_level;
    std::vector<Link*> m_up1, m_up2;
    std::vector<NodeSwitches> m_nodes;
};

std::map<std::string, TopologyFactory>& topology_factories() {
    static std::map<std::string, TopologyFactory> f = [] {
        std::map<std::string, TopologyFactory> m;
        auto torus = [](const ClusterSpec& s) { return std::make_unique<TorusTopology>(s); };
        m["ring"] = torus;
        m["torus2d"] = torus;
        m["torus3d"] = torus;
        m["full"] = [](const ClusterSpec& s) { return std::make_unique<FullTopology>(s); };
        m["switch"] = [](const ClusterSpec& s) { return std::make_unique<SwitchedTopology>(s, false); };
        m["switch2"] = [](const ClusterSpec& s) { return std::make_unique<SwitchedTopology>(s, true); };
        return m;
    }();
    return f;
}

}  // namespace

void register_topology(const std::string& kind, TopologyFactory factory) {
    topology_factories()[kind] = std::move(factory);
}

std::vector<std::string> topology_kinds() {
    std::vector<std::string> out;
    for (const auto& kv : topology_factories()) out.push_back(kv.first);
    return out;
}

std::unique_ptr<Topology> make_topology(const ClusterSpec& spec) {
    auto it = topology_factories().find(spec.topology.kind);
    if (it == topology_factories().end()) {
        std::string allowed;
        for (const auto& k : topology_kinds()) allowed += (allowed.empty() ? "" : ", ") + k;
        throw UserError(fmt::format("cluster.topology = '{}': unknown kind; allowed: {}", spec.topology.text, allowed));
    }
    return it->second(spec);
}

// ---------------------------------------------------------------------------------------------------
// Chip endpoint

EndpointSpec EndpointSpec::from_config(const Config& c) {
    EndpointSpec s;
    s.dma_rings = static_cast<int>(c.get_int("chip.cores"));
    s.engines_per_ring = static_cast<int>(c.get_int("chip.core.dma.engines"));
    s.engine_bandwidth = c.get_bandwidth("chip.core.dma.engine_bandwidth");
    s.descriptor_cost = c.get_duration("chip.core.dma.descriptor_cost");
    s.transfer_latency = c.get_duration("chip.core.dma.transfer_latency");
    s.reduce_rate = c.get_real("chip.core.dma.reduce_rate");
    s.rank_rings = std::max(1, s.dma_rings / static_cast<int>(c.get_int("cluster.ranks_per_chip")));
    s.packet_bytes = c.get_bytes("cluster.link.packet").count;
    s.credits = static_cast<int>(c.get_int("cluster.link.credits"));
    s.cc_packet = {c.get_bytes("cluster.cc.packet").count, c.get_bytes("cluster.cc.dp_packet").count};
    s.strict_priority = c.get_text("chip.core.dma.arbitration") == "strict-priority";
    return s;
}

Packet* PacketPool::get() {
    if (m_free.empty()) {
        m_storage.emplace_back();
        return &m_storage.back();
    }
    Packet* p = m_free.back();
    m_free.pop_back();
    return p;
}

ChipEndpoint::ChipEndpoint(const sc_core::sc_module_name& name, const EndpointSpec& spec, PacketPool& pool)
    : sc_core::sc_module(name),
      memory_port("memory_port"),
      m_spec(spec),
      m_pool(pool),
      m_ring_fs_per_byte(1e15 / (spec.engine_bandwidth.bytes_per_s * spec.engines_per_ring)),
      m_descriptor_fs(static_cast<std::uint64_t>(std::llround(spec.descriptor_cost.seconds * 1e15))),
      m_transfer_fs(static_cast<std::uint64_t>(std::llround(spec.transfer_latency.seconds * 1e15))) {
    m_timing = new MemoryTiming;
    m_timing->on_done = [this](std::uint64_t t) {
        m_memory_done = true;
        m_memory_done_fs = t;
    };
    m_request.set_extension(m_timing);
    m_slots = std::max(1, spec.dma_rings / spec.rank_rings);
    m_weighted = std::min(spec.cc_packet[0], spec.cc_packet[1]) < spec.packet_bytes;
    m_next_ring.assign(static_cast<std::size_t>(m_slots), 0);
    for (int r = 0; r < spec.dma_rings; ++r) {
        m_rings.push_back(std::make_unique<Ring>());
        m_rings.back()->wake = std::make_unique<Wakeup>([this, r] { ring_wake(r); });
    }
}

std::uint64_t ChipEndpoint::memory_access(bool write, std::uint64_t bytes, std::uint64_t now,
                                          std::uint64_t* accept_fs) {
    if (m_direct_memory != nullptr) {
        const AccessTiming t = m_direct_memory->timed_access(write, bytes, now);
        if (accept_fs != nullptr) *accept_fs = t.accept_fs;
        return t.done_fs;
    }
    m_request.set_command(write ? tlm::TLM_WRITE_COMMAND : tlm::TLM_READ_COMMAND);
    m_request.set_address(0);
    m_request.set_data_ptr(nullptr);
    m_request.set_data_length(static_cast<unsigned int>(bytes));
    m_request.set_streaming_width(static_cast<unsigned int>(bytes));
    m_memory_done = false;
    sc_core::sc_time delay = sc_core::SC_ZERO_TIME;
    memory_port->b_transport(m_request, delay);
    if (!m_memory_done) {
        throw std::logic_error(
            "chip endpoint: the memory model did not report completion within b_transport; collectives need a model "
            "that does (cluster.memory_model, docs/adr/0008)");
    }
    if (accept_fs != nullptr) *accept_fs = now + m_timing->accept_delay.value();
    return m_memory_done_fs;
}

int ChipEndpoint::stream_ring(int slot, int channel) {
    const int first = (slot % m_slots) * m_spec.rank_rings;
    if (channel >= 0) return first + channel % m_spec.rank_rings;
    int& next = m_next_ring[static_cast<std::size_t>(slot % m_slots)];
    const int r = first + next;
    next = (next + 1) % m_spec.rank_rings;
    return r;
}

void ChipEndpoint::send(Message* m) {
    const std::uint64_t now = WakeupQueue::now();
    m->ready_fs = now + m_transfer_fs;
    m->unsent = m->bytes;
    m->packets_left = (m->bytes + m_spec.packet_bytes - 1) / m_spec.packet_bytes;
    m->done_fs = 0;
    m->in_window = 0;
    m->parked = false;
    m->credit = 0;
    if (m->stream < 0 || m->stream > 1) throw std::logic_error("chip endpoint: a message's stream must be 0 or 1");
    const std::size_t hops = m->route->size();
    if (hops <= m->short_slots.size()) {
        m->flow_slots = m->short_slots.data();
    } else {
        m->long_slots.resize(hops);
        m->flow_slots = m->long_slots.data();
    }
    std::fill(m->flow_slots, m->flow_slots + hops, -1);
    m->ring = stream_ring(m->src_slot, m->channel);
    m->reducer = -1;
    ++m_stats.messages_sent;
    if (m->bytes == 0) {  // a semaphore-only message: done when the transfer would have started
        schedule({m->ready_fs, 0, 2, nullptr, m});
        return;
    }
    Ring& g = *m_rings[static_cast<std::size_t>(m->ring)];
    g.pending.push_back(m);
    g.wake->notify(std::max(m->ready_fs, g.busy_until) - now);
}

bool ChipEndpoint::idle(std::uint64_t now_fs) const {
    if (!m_work.empty()) return false;
    for (const auto& g : m_rings)
        if (!g->pending.empty() || !g->active.empty() || g->busy_until > now_fs) return false;
    return true;
}

void ChipEndpoint::add_stats(const EndpointStats& d) {
    m_stats.messages_sent += d.messages_sent;
    m_stats.bytes_sent += d.bytes_sent;
    m_stats.bytes_received += d.bytes_received;
    m_stats.bytes_reduced += d.bytes_reduced;
    m_stats.packets_sent += d.packets_sent;
    m_stats.dma_busy_fs += d.dma_busy_fs;
    m_stats.kernel_lag_fs += d.kernel_lag_fs;
}

void ChipEndpoint::set_dma_load(double load) {
    m_dma_load = load;
}

std::uint64_t ChipEndpoint::packet_dma_fs(std::uint64_t bytes, bool reduce, int stream) {
    DmaCache& cache = m_dma_cache[reduce ? 1 : 0][stream];
    if (bytes != cache.bytes || m_dma_load != cache.load) {
        // The ring's engines share the packet (one DMA buffer each): descriptor cost plus the bytes at the
        // ring's bandwidth, at the reduction rate when they add it into the local data, in the engine time the
        // chip's kernels leave. A sent packet is handed to the link once it is read.
        const double byte_fs = static_cast<double>(bytes) * m_ring_fs_per_byte / (reduce ? m_spec.reduce_rate : 1.0);
        const double own_fs = static_cast<double>(m_descriptor_fs) + byte_fs;
        // Round-robin with the kernels' queues at packet boundaries: the packet gets the engine time they leave,
        // and at least its stream's share s of turns against kernel packets of stream 0's size (one half for
        // stream 0). (The runtime's default kernel packets are smaller, 4 KiB [CC-OVERLAP], which would give the
        // collectives nearly every turn; the model keeps the even share.)
        const auto p = static_cast<double>(m_spec.cc_packet[static_cast<std::size_t>(stream)]);
        const double s = p / (p + static_cast<double>(m_spec.cc_packet[0]));
        const double u = m_dma_load;
        const double share = std::max(1.0 - u, s);
        cache.fs = u > 0 ? static_cast<std::uint64_t>(own_fs / share + 0.5)
                         : m_descriptor_fs + static_cast<std::uint64_t>(byte_fs + 0.5);
        // Kernels wanting more than 1 - s of the engines get less while the packet moves: of its stretched
        // time own / s they get own (1 / s - 1) and wanted u own / s, so they fall behind by the difference
        // over their rate u (docs/training.md step 7).
        cache.lag = u > 1.0 - s ? static_cast<std::uint64_t>((u + s - 1.0) * own_fs / (s * u) + 0.5) : 0;
        cache.bytes = bytes;
        cache.load = u;
    }
    m_stats.kernel_lag_fs += cache.lag;
    return cache.fs;
}

void ChipEndpoint::ring_wake(int r) {
    serve(*m_rings[static_cast<std::size_t>(r)], WakeupQueue::now());
}

void ChipEndpoint::serve(Ring& g, std::uint64_t now) {
    if (g.busy_until <= now)
        ring_step(g, now);
    else
        g.wake->notify(g.busy_until - now);
}

void ChipEndpoint::ring_step(Ring& g, std::uint64_t now) {
    while (!g.pending.empty() && g.pending.front()->ready_fs <= now) {
        g.active.push_back({g.pending.front(), g.pending.front()->stream});
        g.pending.pop_front();
    }
    if (g.active.empty()) {
        if (!g.pending.empty()) g.wake->notify(g.pending.front()->ready_fs - now);
        return;
    }
    const Turn t = next_turn(g);
    Message* const m = t.message;
    Packet* sent = nullptr;
    const std::uint64_t busy = m == nullptr ? reduce_packet(g, t.stream, now) : send_packet(g, m, now, sent);
    m_stats.dma_busy_fs += busy;
    g.busy_until = now + busy;
    if (m == nullptr) {
        const auto s = static_cast<std::size_t>(t.stream);
        if (g.reduce_first[s] != nullptr)
            g.active.push_back(t);
        else
            g.reduce_credit[s] = 0;  // an emptied queue keeps no credit
    }
    // Wake for the next packet only when there is one to move; a parked message wakes the ring with its
    // credit, a received one with its arrival.
    if (!g.active.empty()) {
        g.wake->notify(busy);
    } else if (!g.pending.empty()) {
        g.wake->notify(std::max(g.busy_until, g.pending.front()->ready_fs) - now);
    }
    // Last, once the ring is marked busy: a sink that started the packet at once and returned its credit
    // (on_first_hop_start) must find the ring busy. (A link only queues it and wakes later.)
    if (sent != nullptr) {
        if (sent->route->empty())
            accept(sent);
        else
            (*sent->route)[0]->accept(sent);
    }
}

ChipEndpoint::Turn ChipEndpoint::next_turn(Ring& g) {
    if (m_spec.strict_priority) {
        // The first queue of stream 0 in the rotation, while there is one: the others keep their order, so
        // each stream's queues still take turns among themselves. One packet per turn.
        std::size_t i = 0;
        while (i < g.active.size() && g.active[i].stream != 0) ++i;
        if (i == g.active.size()) i = 0;
        const Turn t = g.active[i];
        g.active.erase(i);
        return t;
    }
    if (!m_weighted) {  // every turn moves a packet: plain round-robin
        const Turn t = g.active.front();
        g.active.pop_front();
        return t;
    }
    // What a turn credits a queue, what its next packet needs, and its credit.
    const auto quantum = [&](const Turn& t) { return m_spec.cc_packet[static_cast<std::size_t>(t.stream)]; };
    const auto need = [&](const Turn& t) -> std::uint64_t {
        return t.message != nullptr ? std::min(m_spec.packet_bytes, t.message->unsent)
                                    : g.reduce_first[static_cast<std::size_t>(t.stream)]->bytes;
    };
    const auto credit = [&](const Turn& t) -> std::uint64_t& {
        return t.message != nullptr ? t.message->credit : g.reduce_credit[static_cast<std::size_t>(t.stream)];
    };
    // Whole rounds in which no queue could move a packet pass at once: every queue gets their credit. (When
    // the next queue moves a packet in this turn, the scan stops at it.)
    std::uint64_t rounds = ~std::uint64_t{0};
    for (std::size_t i = 0; i < g.active.size(); ++i) {
        const Turn& t = g.active[i];
        const std::uint64_t c = credit(t), n = need(t), q = quantum(t);
        rounds = std::min(rounds, c >= n ? 0 : (n - c + q - 1) / q);
        if (rounds <= 1) break;
    }
    if (rounds > 1) {
        for (std::size_t i = 0; i < g.active.size(); ++i) credit(g.active[i]) += (rounds - 1) * quantum(g.active[i]);
    }
    for (;;) {
        const Turn t = g.active.front();
        g.active.pop_front();
        std::uint64_t& c = credit(t);
        c += quantum(t);
        const std::uint64_t n = need(t);
        if (c >= n) {
            c -= n;
            return t;
        }
        g.active.push_back(t);
    }
}

std::uint64_t ChipEndpoint::send_packet(Ring& g, Message* m, std::uint64_t now, Packet*& sent) {
    const std::uint64_t bytes = std::min(m_spec.packet_bytes, m->unsent);
    m->unsent -= bytes;
    std::uint64_t accept_fs = now;
    const std::uint64_t read_done = memory_access(false, bytes, now, &accept_fs);
    const std::uint64_t dma_fs = packet_dma_fs(bytes, false, m->stream);
    const std::uint64_t ready = std::max(now + dma_fs, read_done);
    Packet* p = m_pool.get();
    p->bytes = static_cast<std::uint32_t>(bytes);
    p->head_fs = ready;
    p->tail_fs = ready;
    p->route = m->route;
    p->hop = 0;
    p->message = m;
    p->source = m->route->empty() ? nullptr : this;
    p->flow_slots = m->flow_slots;
    ++m_stats.packets_sent;
    m_stats.bytes_sent += bytes;
    if (p->source != nullptr) ++m->in_window;
    if (m->unsent > 0) {
        if (m->in_window < m_spec.credits)
            g.active.push_back({m, m->stream});
        else
            m->parked = true;
    }
    sent = p;
    return std::max(dma_fs, accept_fs - now);
}

std::uint64_t ChipEndpoint::reduce_packet(Ring& g, int stream, std::uint64_t now) {
    // Read-add-write by the DMA engines [NKI-ARCH3]: the ring reads the local operand from memory, adds the
    // received packet to it and writes the sum back.
    const auto s = static_cast<std::size_t>(stream);
    Packet* p = g.reduce_first[s];
    g.reduce_first[s] = p->next;
    if (g.reduce_first[s] == nullptr) g.reduce_last[s] = nullptr;
    p->next = nullptr;
    auto* m = static_cast<Message*>(p->message);
    std::uint64_t accept_fs = now;
    const std::uint64_t read_done = memory_access(false, p->bytes, now, &accept_fs);
    const std::uint64_t dma_fs = packet_dma_fs(p->bytes, true, stream);
    m_stats.bytes_reduced += p->bytes;
    schedule({std::max(now + dma_fs, read_done), 0, 1, p, m});
    return std::max(dma_fs, accept_fs - now);
}

void ChipEndpoint::on_first_hop_start(Packet* p) {
    auto* m = static_cast<Message*>(p->message);
    --m->in_window;
    if (!m->parked) return;
    m->parked = false;
    Ring& g = *m_rings[static_cast<std::size_t>(m->ring)];
    g.active.push_back({m, m->stream});
    const std::uint64_t now = WakeupQueue::now();
    // An idle ring moves the next packet at once (inside the link's activation: no event of its own).
    serve(g, now);
}

void ChipEndpoint::accept(Packet* p) {
    schedule({p->tail_fs, 0, 0, p, static_cast<Message*>(p->message)});
}

void ChipEndpoint::schedule(const Work& w) {
    const std::uint64_t now = WakeupQueue::now();
    Work x = w;
    x.seq = m_seq++;
    m_work.push(x);
    m_work_event.notify(std::max(x.at_fs, now) - now);
}

void ChipEndpoint::packet_done(Message* m, std::uint64_t done_fs) {
    m->done_fs = std::max(m->done_fs, done_fs);
    if (--m->packets_left == 0) schedule({m->done_fs, 0, 2, nullptr, m});
}

void ChipEndpoint::on_work() {
    const std::uint64_t now = WakeupQueue::now();
    while (!m_work.empty() && m_work.top().at_fs <= now) {
        const Work w = m_work.top();
        m_work.pop();
        Message* m = w.message;
        if (w.kind == 0) {
            m_stats.bytes_received += w.packet->bytes;
            if (m->reduce) {
                // Added into the local data by the receiving rank's DMA rings (reduce_packet), each ring
                // serving its queue of received packets in its rotation with its other queues: a channel's
                // packets by its CC-Core's ring (stream_ring); without a channel, the message takes the
                // rank's next ring when its first packet arrives and its packets go to the rank's rings in
                // turn from there.
                if (m->reducer < 0) {
                    m->reducer = stream_ring(m->dst_slot, m->channel);
                    m->reduce_next = 0;
                }
                int r = m->reducer;
                if (m->channel < 0) {
                    const int first = r - r % m_spec.rank_rings;
                    r = first + (r - first + static_cast<int>(m->reduce_next)) % m_spec.rank_rings;
                    m->reduce_next = (m->reduce_next + 1) % static_cast<std::uint32_t>(m_spec.rank_rings);
                }
                Ring& g = *m_rings[static_cast<std::size_t>(r)];
                Packet* p = w.packet;
                p->next = nullptr;
                const auto s = static_cast<std::size_t>(m->stream);
                if (g.reduce_first[s] != nullptr) {
                    g.reduce_last[s]->next = p;
                } else {
                    g.reduce_first[s] = p;
                    g.active.push_back({nullptr, m->stream});
                }
                g.reduce_last[s] = p;
                serve(g, now);
            } else {
                const std::uint64_t write_done = memory_access(true, w.packet->bytes, now);
                m_pool.put(w.packet);
                packet_done(m, write_done);
            }
        } else if (w.kind == 1) {
            const std::uint64_t write_done = memory_access(true, w.packet->bytes, now);
            m_pool.put(w.packet);
            packet_done(m, write_done);
        } else {
            m->on_done(now);
        }
    }
    if (!m_work.empty()) m_work_event.notify(m_work.top().at_fs - now);
}

// ---------------------------------------------------------------------------------------------------
// Cluster

Cluster::Cluster(const sc_core::sc_module_name& name, const ClusterSpec& spec, const Config& config)
    : sc_core::sc_module(name), m_spec(spec) {
    EndpointSpec es = EndpointSpec::from_config(config);
    const FabricSpec fabric = FabricSpec::from_config(config);
    const int cores = static_cast<int>(config.get_int("chip.cores"));
    // hbm: the transaction-level HBM, its rates measured once on the chip's burst-level model (ADR 0008).
    const HbmRates* rates = spec.memory_model == "hbm" ? &hbm_rates(config, spec.packet.count) : nullptr;
    std::vector<PacketSink*> sinks;
    for (int c = 0; c < spec.chips(); ++c) {
        const std::string memory_name = fmt::format("memory{}", c);
        if (rates != nullptr)
            m_memories.push_back(std::make_unique<HbmTlMemory>(memory_name.c_str(), *rates));
        else
            m_memories.push_back(
                make_memory(spec.memory_model, memory_name.c_str(), config, MemoryContext{cores, true}));
        m_fabrics.push_back(std::make_unique<OnChipFabric>(fmt::format("fabric{}", c).c_str(), fabric));
        m_endpoints.push_back(std::make_unique<ChipEndpoint>(fmt::format("chip{}", c).c_str(), es, m_pool));
        m_endpoints.back()->memory_port.bind(m_fabrics.back()->dma_port);
        m_fabrics.back()->memory_port.bind(m_memories.back()->socket);
        // Alongside the sockets, the direct path where the memory offers one (i_memory.h).
        m_fabrics.back()->set_direct_memory(m_memories.back()->direct_access());
        m_endpoints.back()->set_direct_memory(m_fabrics.back()->direct_access());
        sinks.push_back(m_endpoints.back().get());
    }
    m_kernel_load.assign(static_cast<std::size_t>(spec.chips()), KernelLoad{});
    m_topology = make_topology(spec);
    m_topology->build(sinks);
}

void Cluster::set_kernel_load(int chip, const KernelLoad& load) {
    const auto c = static_cast<std::size_t>(chip);
    m_kernel_load.at(c) = load;
    m_endpoints[c]->set_dma_load(load.dma);
    m_memories[c]->set_kernel_load(load.memory);
}

bool Cluster::chip_idle(int chip, std::uint64_t now_fs) const {
    const auto c = static_cast<std::size_t>(chip);
    return m_endpoints.at(c)->idle(now_fs) && m_fabrics.at(c)->idle(now_fs) && m_memories.at(c)->idle(now_fs);
}

KernelLag Cluster::kernel_lag(int chip) const {
    return chip_stats(chip).lag();
}

ChipStats Cluster::chip_stats(int chip) const {
    const auto c = static_cast<std::size_t>(chip);
    return {m_endpoints.at(c)->stats(), m_memories.at(c)->stats(), m_fabrics.at(c)->stats()};
}

void Cluster::add_chip_stats(int chip, const ChipStats& d) {
    const auto c = static_cast<std::size_t>(chip);
    m_endpoints.at(c)->add_stats(d.endpoint);
    m_memories.at(c)->add_stats(d.memory);
    m_fabrics.at(c)->add_stats(d.fabric);
}

ChipStats operator-(const ChipStats& a, const ChipStats& b) {
    ChipStats d;
    const EndpointStats &x = a.endpoint, &y = b.endpoint;
    d.endpoint = {x.messages_sent - y.messages_sent,   x.bytes_sent - y.bytes_sent,
                  x.bytes_received - y.bytes_received, x.bytes_reduced - y.bytes_reduced,
                  x.packets_sent - y.packets_sent,     x.dma_busy_fs - y.dma_busy_fs,
                  x.kernel_lag_fs - y.kernel_lag_fs};
    d.memory = {a.memory.read_bytes - b.memory.read_bytes, a.memory.write_bytes - b.memory.write_bytes,
                a.memory.requests - b.memory.requests, a.memory.busy_fs - b.memory.busy_fs,
                a.memory.kernel_lag_fs - b.memory.kernel_lag_fs};
    d.fabric = {a.fabric.bytes - b.fabric.bytes, a.fabric.transfers - b.fabric.transfers,
                a.fabric.busy_fs - b.fabric.busy_fs};
    return d;
}

}  // namespace trnsim::hw
