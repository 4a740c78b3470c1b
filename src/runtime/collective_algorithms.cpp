// The collective algorithms (docs/collectives.md gives each one's steps and closed form).
#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "trnsim/core/error.h"
#include "trnsim/runtime/collective.h"

namespace trnsim::runtime {

const char* op_name(CollectiveOp op) {
    switch (op) {
        case CollectiveOp::all_reduce: return "all-reduce";
        case CollectiveOp::all_gather: return "all-gather";
        case CollectiveOp::reduce_scatter: return "reduce-scatter";
        case CollectiveOp::all_to_all: return "all-to-all";
        case CollectiveOp::broadcast: return "broadcast";
        case CollectiveOp::send_recv: return "send-recv";
    }
    return "?";
}

std::vector<std::string> op_names() {
    return {"all-reduce", "all-gather", "reduce-scatter", "all-to-all", "broadcast", "send-recv"};
}

bool parse_op(const std::string& text, CollectiveOp& out) {
    for (auto op : {CollectiveOp::all_reduce, CollectiveOp::all_gather, CollectiveOp::reduce_scatter,
                    CollectiveOp::all_to_all, CollectiveOp::broadcast, CollectiveOp::send_recv}) {
        if (text == op_name(op)) {
            out = op;
            return true;
        }
    }
    return false;
}

double busbw_factor(CollectiveOp op, int ranks) {
    const double r = ranks;
    switch (op) {
        case CollectiveOp::all_reduce: return 2 * (r - 1) / r;
        case CollectiveOp::all_gather:
        case CollectiveOp::reduce_scatter:
        case CollectiveOp::all_to_all: return (r - 1) / r;
        default: return 1;
    }
}

namespace {

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
}

// Builds a schedule step by step. A rank's sends on a channel wait for everything it received on that
// channel in the latest step in which it received anything there (step-synchronous algorithms: a rank
// forwards or reduces what just arrived). Channels carry disjoint parts of the buffer and run independently,
// each on one of the rank's collective streams (CC-Cores; NCCL's channels), whose number the ring
// algorithms' reduce-scatter and all-gather phases give (Transfer::channel); every other transfer (other
// algorithms, the ring's broadcast, all-to-all and send-recv) has no stream of its own and is
// step-synchronised as channel 0.
class Builder {
public:
    Builder(std::string algorithm, int ranks, int channels = 1)
        : m_ranks(ranks),
          m_deps(static_cast<std::size_t>(ranks * channels)),
          m_received(static_cast<std::size_t>(ranks * channels)) {
        m_schedule.algorithm = std::move(algorithm);
    }
    // Returns the transfer's index; `after` adds a dependency on another transfer (-1: none). `channel`: the
    // collective stream that moves it (-1: none of its own, step-synchronised as channel 0).
    int send(int src, int dst, std::uint64_t bytes, bool reduce, int after = -1, int channel = -1) {
        const int id = static_cast<int>(m_schedule.transfers.size());
        const int c = std::max(channel, 0);
        m_schedule.transfers.push_back({src, dst, bytes, reduce, m_deps[slot(c, src)]});
        if (after >= 0) m_schedule.transfers.back().deps.push_back(after);
        m_schedule.transfers.back().channel = channel;
        m_received[slot(c, dst)].push_back(id);
        return id;
    }
    // A rank's next transfers on a channel wait for what it received in this step: for one arrival, on it;
    // for several, on a join of them.
    void next_step() {
        for (std::size_t r = 0; r < m_received.size(); ++r) {
            if (m_received[r].empty()) continue;
            if (m_received[r].size() == 1) {
                m_deps[r] = std::move(m_received[r]);
            } else {
                const int rank = static_cast<int>(r % static_cast<std::size_t>(m_ranks));
                const int id = static_cast<int>(m_schedule.transfers.size());
                m_schedule.transfers.push_back({rank, rank, 0, false, std::move(m_received[r]), true});
                m_deps[r] = {id};
            }
            m_received[r].clear();
        }
        ++m_schedule.steps;
    }
    Schedule take() { return std::move(m_schedule); }

private:
    std::size_t slot(int channel, int rank) const { return static_cast<std::size_t>(channel * m_ranks + rank); }

    int m_ranks;
    Schedule m_schedule;
    std::vector<std::vector<int>> m_deps;
    std::vector<std::vector<int>> m_received;
};

// Chunk i of n of a buffer of `bytes`: sizes differ by at most one byte.
std::uint64_t chunk(std::uint64_t bytes, int n, int i) {
    const auto un = static_cast<std::uint64_t>(n);
    return bytes / un + (static_cast<std::uint64_t>(i) < bytes % un ? 1 : 0);
}

int mod(int a, int n) {
    return ((a % n) + n) % n;
}

// Rings running side by side (one per group, or one per channel of the same group): each carries `bytes`
// split in as many chunks as the group has ranks, and moves one chunk per rank per step to its neighbour
// in `dir`.
struct Lane {
    std::vector<int> group;  // ranks in ring order
    std::uint64_t bytes = 0;
    int dir = 1;
    int channel = -1;  // the collective stream (Transfer::channel); -1: none
};

// Ring reduce-scatter (reduce = true) or all-gather (false): p - 1 steps. Reduce-scatter: at step s rank i
// sends chunk i - s (reduced so far) and adds chunk i - s - 1 in; it ends owning chunk i + 1. All-gather:
// at step s rank i forwards chunk i + 1 - s.
void ring_phase(Builder& b, const std::vector<Lane>& lanes, bool reduce) {
    int steps = 0;
    for (const auto& l : lanes) steps = std::max(steps, static_cast<int>(l.group.size()) - 1);
    for (int s = 0; s < steps; ++s) {
        for (const auto& l : lanes) {
            const int p = static_cast<int>(l.group.size());
            if (s >= p - 1) continue;
            for (int i = 0; i < p; ++i) {
                const int c = reduce ? mod(l.dir * i - s, p) : mod(l.dir * i + 1 - s, p);
                b.send(l.group[static_cast<std::size_t>(i)], l.group[static_cast<std::size_t>(mod(i + l.dir, p))],
                       chunk(l.bytes, p, c), reduce, -1, l.channel);
            }
        }
        b.next_step();
    }
}

}  // namespace

std::size_t Schedule::messages() const {
    return static_cast<std::size_t>(
        std::count_if(transfers.begin(), transfers.end(), [](const Transfer& t) { return !t.join; }));
}

namespace {

std::vector<int> all_ranks(const RankLayout& l) {
    std::vector<int> g(static_cast<std::size_t>(l.ranks));
    for (int r = 0; r < l.ranks; ++r) g[static_cast<std::size_t>(r)] = r;
    return g;
}

[[noreturn]] void unsupported(const std::string& algorithm, CollectiveOp op, const std::string& allowed) {
    throw UserError(fmt::format("--algorithm {} does not implement {}; allowed for {}: {}", algorithm, op_name(op),
                                op_name(op), allowed));
}

void send_recv(Builder& b, const RankLayout& l, std::uint64_t bytes) {
    // Every rank sends the buffer to the next rank in ring order (NCCL's SendRecv test pattern).
    for (int i = 0; i < l.ranks; ++i) b.send(i, (i + 1) % l.ranks, bytes, false);
    b.next_step();
}

// ---------------------------------------------------------------------------------------------------

class RingAlgorithm : public ICollectiveAlgorithm {
public:
    explicit RingAlgorithm(bool bidirectional) : m_bidir(bidirectional) {}
    std::string name() const override { return m_bidir ? "ring-bidir" : "ring"; }
    std::string description() const override {
        return m_bidir ? "ring over the ranks in both directions, half of the data each"
                       : "ring over the ranks in one direction (reduce-scatter then all-gather)";
    }
    Schedule build(const CollectiveRequest& q, const RankLayout& l) const override {
        // The rank's streams: ring-bidir gives each direction half of them (at least one).
        const int per_dir = m_bidir ? std::max(1, l.channels / 2) : l.channels;
        const int dirs = m_bidir ? 2 : 1;
        const int channels = per_dir * dirs;
        Builder b(name(), l.ranks, channels);
        const auto g = all_ranks(l);
        std::vector<Lane> lanes;
        for (int c = 0; c < channels; ++c) lanes.push_back({g, chunk(q.bytes, channels, c), c < per_dir ? 1 : -1, c});
        switch (q.op) {
            case CollectiveOp::all_reduce:
                ring_phase(b, lanes, true);
                ring_phase(b, lanes, false);
                break;
            case CollectiveOp::reduce_scatter: ring_phase(b, lanes, true); break;
            case CollectiveOp::all_gather: ring_phase(b, lanes, false); break;
            case CollectiveOp::broadcast: {
                // Pipelined chain from the root: the buffer in p chunks, chunk c leaves the rank at distance
                // d from the root at step c + d; the root sends chunk c + 1 when chunk c has arrived.
                const int p = l.ranks;
                int previous = -1;
                for (int s = 0; s < 2 * p - 2; ++s) {
                    for (int d = 0; d < p - 1; ++d) {
                        const int c = s - d;
                        if (c < 0 || c >= p) continue;
                        const int src = (q.root + d) % p;
                        const int id = b.send(src, (src + 1) % p, chunk(q.bytes, p, c), false, d == 0 ? previous : -1);
                        if (d == 0) previous = id;
                    }
                    b.next_step();
                }
                break;
            }
            case CollectiveOp::all_to_all:
                // Shifted exchange: at step s every rank sends its block for rank i + s (routed).
                for (int s = 1; s < l.ranks; ++s) {
                    for (int i = 0; i < l.ranks; ++i)
                        b.send(i, (i + s) % l.ranks, chunk(q.bytes, l.ranks, (i + s) % l.ranks), false);
                    b.next_step();
                }
                break;
            case CollectiveOp::send_recv: send_recv(b, l, q.bytes); break;
        }
        return b.take();
    }

private:
    bool m_bidir;
};

class MeshAlgorithm : public ICollectiveAlgorithm {
public:
    std::string name() const override { return "mesh"; }
    std::string description() const override {
        return "direct: every rank sends each peer its share at once (reduce-scatter, then all-gather)";
    }
    Schedule build(const CollectiveRequest& q, const RankLayout& l) const override {
        Builder b(name(), l.ranks);
        const int p = l.ranks;
        auto scatter = [&](bool reduce) {
            for (int i = 0; i < p; ++i)
                for (int j = 0; j < p; ++j)
                    if (i != j) b.send(i, j, chunk(q.bytes, p, reduce ? j : i), reduce);
            b.next_step();
        };
        switch (q.op) {
            case CollectiveOp::all_reduce:
                scatter(true);
                scatter(false);
                break;
            case CollectiveOp::reduce_scatter: scatter(true); break;
            case CollectiveOp::all_gather: scatter(false); break;
            case CollectiveOp::all_to_all:
                for (int i = 0; i < p; ++i)
                    for (int j = 0; j < p; ++j)
                        if (i != j) b.send(i, j, chunk(q.bytes, p, j), false);
                b.next_step();
                break;
            case CollectiveOp::broadcast:
                for (int j = 0; j < p; ++j)
                    if (j != q.root) b.send(q.root, j, q.bytes, false);
                b.next_step();
                break;
            case CollectiveOp::send_recv: send_recv(b, l, q.bytes); break;
        }
        return b.take();
    }
};

// Hypercube label of each rank. On a torus whose dimensions are 2 or 4 the label is the concatenated
// Gray codes of the coordinates, so partners across one bit are direct neighbours (a 4-ring is the
// 2-cube; the 4x4 torus is the 4-cube, [CC-INTRA]); otherwise the rank number.
std::vector<int> hypercube_labels(const RankLayout& l) {
    std::vector<int> labels(static_cast<std::size_t>(l.ranks));
    for (int r = 0; r < l.ranks; ++r) labels[static_cast<std::size_t>(r)] = r;
    // Gray labels need every chip of one node's torus (dimensions 1, 2 or 4), each with the same power-of-two
    // number of the group's ranks. Those take the highest bits (in rank order), so recursive halving's first,
    // largest exchange stays on the chip and the ranks of a chip then share each link with half the data.
    std::map<int, std::vector<int>> by_chip;
    for (int r = 0; r < l.ranks; ++r) by_chip[l.chip_of_rank[static_cast<std::size_t>(r)]].push_back(r);
    const std::size_t per = by_chip.begin()->second.size();
    bool gray = !l.torus_dims.empty() && static_cast<int>(by_chip.size()) == l.chips_per_node && (per & (per - 1)) == 0;
    for (int d : l.torus_dims) gray = gray && (d == 1 || d == 2 || d == 4);
    for (const auto& [chip, ranks] : by_chip) {
        gray = gray && ranks.size() == per &&
               l.node_of_rank[static_cast<std::size_t>(ranks.front())] == l.node_of_rank.front();
    }
    if (!gray) return labels;
    for (const auto& [chip, ranks] : by_chip) {
        int label = 0, shift = 0;
        const auto& c = l.coords_of_rank[static_cast<std::size_t>(ranks.front())];
        for (std::size_t d = 0; d < l.torus_dims.size(); ++d) {
            const int bits = l.torus_dims[d] == 4 ? 2 : l.torus_dims[d] == 2 ? 1 : 0;
            label |= (c[d] ^ (c[d] >> 1)) << shift;
            shift += bits;
        }
        for (std::size_t k = 0; k < ranks.size(); ++k)
            labels[static_cast<std::size_t>(ranks[k])] = (static_cast<int>(k) << shift) | label;
    }
    return labels;
}

class RdhAlgorithm : public ICollectiveAlgorithm {
public:
    std::string name() const override { return "rdh"; }
    std::string description() const override {
        return "recursive halving (reduce-scatter) and doubling (all-gather) over a hypercube; power-of-two ranks";
    }
    Schedule build(const CollectiveRequest& q, const RankLayout& l) const override {
        const int p = l.ranks;
        if (p & (p - 1)) {
            throw UserError(fmt::format(
                "--algorithm rdh needs a power-of-two rank count, got {} ranks; allowed: --ranks 2, 4, 8, ... or "
                "another --algorithm (ring, ring-bidir, mesh)",
                p));
        }
        int k = 0;
        while ((1 << k) < p) ++k;
        const auto labels = hypercube_labels(l);
        std::vector<int> rank_of(static_cast<std::size_t>(p));
        for (int r = 0; r < p; ++r) rank_of[static_cast<std::size_t>(labels[static_cast<std::size_t>(r)])] = r;
        auto partner = [&](int r, int bit) {
            return rank_of[static_cast<std::size_t>(labels[static_cast<std::size_t>(r)] ^ (1 << bit))];
        };
        Builder b(name(), p);
        // Halving: the farthest bit first; the segment a rank keeps halves each step.
        auto halving = [&] {
            std::uint64_t seg = q.bytes;
            for (int t = 0; t < k; ++t) {
                const std::uint64_t give = seg / 2;
                for (int r = 0; r < p; ++r) b.send(r, partner(r, k - 1 - t), give, true);
                seg -= give;
                b.next_step();
            }
        };
        // Doubling: the nearest bit first; the segment doubles each step.
        auto doubling = [&](std::uint64_t total) {
            for (int t = 0; t < k; ++t) {
                const std::uint64_t seg = (total << t) / static_cast<std::uint64_t>(p);
                for (int r = 0; r < p; ++r) b.send(r, partner(r, t), seg, false);
                b.next_step();
            }
        };
        switch (q.op) {
            case CollectiveOp::all_reduce:
                halving();
                doubling(q.bytes);
                break;
            case CollectiveOp::reduce_scatter: halving(); break;
            case CollectiveOp::all_gather: doubling(q.bytes); break;
            case CollectiveOp::broadcast: {
                // Binomial tree from the root: at step t every rank that has the data sends it across bit t.
                const int root_label = labels[static_cast<std::size_t>(q.root)];
                for (int t = 0; t < k; ++t) {
                    for (int r = 0; r < p; ++r) {
                        const int rel = labels[static_cast<std::size_t>(r)] ^ root_label;
                        if (rel < (1 << t)) b.send(r, partner(r, t), q.bytes, false);
                    }
                    b.next_step();
                }
                break;
            }
            case CollectiveOp::send_recv: send_recv(b, l, q.bytes); break;
            case CollectiveOp::all_to_all: unsupported(name(), q.op, "mesh, ring, auto");
        }
        return b.take();
    }
};

// Two-level ring algorithms: reduce-scatter within inner groups, all-reduce (or reduce-scatter /
// all-gather) across outer groups on the inner result, all-gather within inner groups.
class TwoLevelAlgorithm : public ICollectiveAlgorithm {
public:
    Schedule build(const CollectiveRequest& q, const RankLayout& l) const override {
        std::vector<std::vector<int>> inner, outer;
        groups(l, inner, outer);
        const std::uint64_t a = inner.front().size();
        std::vector<Lane> in_lanes, out_lanes;
        for (auto& g : inner) in_lanes.push_back({g, q.bytes, 1});
        // After the inner reduce-scatter a rank holds one chunk of the inner ring: N / a.
        for (auto& g : outer) out_lanes.push_back({g, q.bytes / a, 1});
        Builder b(name(), l.ranks);
        switch (q.op) {
            case CollectiveOp::all_reduce:
                ring_phase(b, in_lanes, true);
                ring_phase(b, out_lanes, true);
                ring_phase(b, out_lanes, false);
                ring_phase(b, in_lanes, false);
                break;
            case CollectiveOp::reduce_scatter:
                ring_phase(b, in_lanes, true);
                ring_phase(b, out_lanes, true);
                break;
            case CollectiveOp::all_gather:
                ring_phase(b, out_lanes, false);
                ring_phase(b, in_lanes, false);
                break;
            default: unsupported(name(), q.op, "mesh, ring, ring-bidir, auto");
        }
        return b.take();
    }

protected:
    virtual void groups(const RankLayout& l, std::vector<std::vector<int>>& inner,
                        std::vector<std::vector<int>>& outer) const = 0;
};

class Torus2dAlgorithm : public TwoLevelAlgorithm {
public:
    std::string name() const override { return "torus2d"; }
    std::string description() const override {
        return "torus: reduce-scatter along x, all-reduce along the other dimensions, all-gather along x";
    }

protected:
    void groups(const RankLayout& l, std::vector<std::vector<int>>& inner,
                std::vector<std::vector<int>>& outer) const override {
        if (l.torus_dims.size() < 2 || l.nodes != 1 || l.ranks_per_chip != 1 || l.ranks != l.total_ranks) {
            throw UserError(fmt::format(
                "--algorithm torus2d needs every rank of one 2D or 3D torus with one rank per chip (cluster.topology "
                "torus2d:AxB or torus3d:AxBxC, --ranks {} or none, cluster.nodes 1, cluster.ranks_per_chip 1); got "
                "cluster.topology {}, {} of {} ranks, {} nodes, {} ranks per chip",
                l.total_ranks, l.topology, l.ranks, l.total_ranks, l.nodes, l.ranks_per_chip));
        }
        const int a = l.torus_dims[0];
        // Rank of each (x, rest) where `rest` indexes the other coordinates in Hamiltonian (reflected Gray)
        // order, so that consecutive ranks of an outer group are neighbours.
        std::map<std::vector<int>, int> rank_at;
        for (int r = 0; r < l.ranks; ++r) rank_at[l.coords_of_rank[static_cast<std::size_t>(r)]] = r;
        std::vector<std::vector<int>> rest{{}};
        for (std::size_t d = 1; d < l.torus_dims.size(); ++d) {
            std::vector<std::vector<int>> next;
            for (int v = 0; v < l.torus_dims[d]; ++v)
                for (std::size_t i = 0; i < rest.size(); ++i) {
                    auto c = v % 2 == 0 ? rest[i] : rest[rest.size() - 1 - i];
                    c.push_back(v);
                    next.push_back(std::move(c));
                }
            rest = std::move(next);
        }
        for (const auto& rc : rest) {
            std::vector<int> g;
            for (int x = 0; x < a; ++x) {
                std::vector<int> c{x};
                c.insert(c.end(), rc.begin(), rc.end());
                g.push_back(rank_at.at(c));
            }
            inner.push_back(std::move(g));
        }
        for (int x = 0; x < a; ++x) {
            std::vector<int> g;
            for (const auto& in : inner) g.push_back(in[static_cast<std::size_t>(x)]);
            outer.push_back(std::move(g));
        }
    }
};

class HierarchicalAlgorithm : public TwoLevelAlgorithm {
public:
    std::string name() const override { return "hierarchical"; }
    std::string description() const override {
        return "intra-node reduce-scatter (ring), inter-node all-reduce (ring over EFA), intra-node all-gather";
    }

protected:
    void groups(const RankLayout& l, std::vector<std::vector<int>>& inner,
                std::vector<std::vector<int>>& outer) const override {
        const int per_node = l.total_ranks / l.nodes;
        if (l.ranks != l.total_ranks) {
            throw UserError(fmt::format(
                "--algorithm hierarchical needs every rank of every node (--ranks {} or none); got --ranks {}",
                l.total_ranks, l.ranks));
        }
        inner.assign(static_cast<std::size_t>(l.nodes), {});
        outer.assign(static_cast<std::size_t>(per_node), {});
        for (int r = 0; r < l.ranks; ++r) {
            inner[static_cast<std::size_t>(l.node_of_rank[static_cast<std::size_t>(r)])].push_back(r);
            outer[static_cast<std::size_t>(l.position_in_node[static_cast<std::size_t>(r)])].push_back(r);
        }
    }
};

// Picks as the Neuron runtime does: every rank of several nodes uses the hierarchical framework at any size
// [CC-INTER]; otherwise by size [CC-INTRA]: mesh below cluster.collective.auto.mesh_max, rdh up to
// cluster.collective.auto.rdh_max when the rank count is a power of two, then ring-bidir. all-to-all is always
// direct (mesh); send-recv has one pattern.
class AutoAlgorithm : public ICollectiveAlgorithm {
public:
    std::string name() const override { return "auto"; }
    std::string description() const override {
        return "hierarchical for every rank of several nodes; else by size: mesh < cluster.collective.auto.mesh_max "
               "<= rdh <= cluster.collective.auto.rdh_max < ring-bidir";
    }
    Schedule build(const CollectiveRequest& q, const RankLayout& l) const override {
        return collective_algorithm(choose(q, l)).build(q, l);
    }
    static std::string choose(const CollectiveRequest& q, const RankLayout& l) {
        if (q.op == CollectiveOp::all_to_all || q.op == CollectiveOp::send_recv) return "mesh";
        if (l.nodes > 1 && l.ranks == l.total_ranks && q.op != CollectiveOp::broadcast) return "hierarchical";
        if (q.bytes < q.auto_mesh_max) return "mesh";
        const bool pow2 = (l.ranks & (l.ranks - 1)) == 0;
        if (q.bytes <= q.auto_rdh_max && pow2) return "rdh";
        return "ring-bidir";
    }
};

std::map<std::string, std::unique_ptr<ICollectiveAlgorithm>>& algorithms() {
    static std::map<std::string, std::unique_ptr<ICollectiveAlgorithm>> m = [] {
        std::map<std::string, std::unique_ptr<ICollectiveAlgorithm>> a;
        std::vector<std::unique_ptr<ICollectiveAlgorithm>> list;
        list.push_back(std::make_unique<RingAlgorithm>(false));
        list.push_back(std::make_unique<RingAlgorithm>(true));
        list.push_back(std::make_unique<MeshAlgorithm>());
        list.push_back(std::make_unique<RdhAlgorithm>());
        list.push_back(std::make_unique<Torus2dAlgorithm>());
        list.push_back(std::make_unique<HierarchicalAlgorithm>());
        list.push_back(std::make_unique<AutoAlgorithm>());
        for (auto& x : list) {
            const std::string n = x->name();
            a[n] = std::move(x);
        }
        return a;
    }();
    return m;
}

}  // namespace

void register_collective_algorithm(std::unique_ptr<ICollectiveAlgorithm> algorithm) {
    const std::string n = algorithm->name();
    algorithms()[n] = std::move(algorithm);
}

std::vector<std::string> collective_algorithm_names() {
    std::vector<std::string> out;
    for (const auto& kv : algorithms()) out.push_back(kv.first);
    return out;
}

const ICollectiveAlgorithm& collective_algorithm(const std::string& name) {
    auto it = algorithms().find(name);
    if (it == algorithms().end()) {
        throw UserError(
            fmt::format("--algorithm {}: unknown algorithm; allowed: {}", name, join(collective_algorithm_names())));
    }
    return *it->second;
}

}  // namespace trnsim::runtime
