#include "trnsim/runtime/collective_engine.h"

#include <algorithm>
#include <iterator>
#include <set>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "trnsim/core/process.h"
#include "trnsim/core/sim_context.h"

namespace trnsim::runtime {

namespace {

// Two 64-bit lanes, each mixing in one value per step with splitmix64's finalizer (every input bit reaches
// every output bit), with different seeds and constants: a 128-bit name for a sequence of integers.
struct FieldHash {
    std::uint64_t a = 0x9e3779b97f4a7c15ull, b = 0xd1b54a32d192ed03ull;
    static std::uint64_t mix(std::uint64_t x, std::uint64_t m1, std::uint64_t m2) {
        x = (x ^ (x >> 30)) * m1;
        x = (x ^ (x >> 27)) * m2;
        return x ^ (x >> 31);
    }
    void add(std::uint64_t v) {
        a = mix(a ^ v, 0xbf58476d1ce4e5b9ull, 0x94d049bb133111ebull) + v;
        b = mix((b + v) ^ 0x5851f42d4c957f2dull, 0xff51afd7ed558ccdull, 0xc4ceb9fe1a85ec53ull);
    }
    std::string hex() const { return fmt::format("{:016x}{:016x}", a, b); }
};

}  // namespace

CollectiveEngine::CollectiveEngine(hw::Cluster& cluster) : m_cluster(cluster) {
    const hw::ClusterSpec& spec = cluster.spec();
    const auto order = cluster.topology().ring_order();
    for (int n = 0; n < spec.nodes; ++n)
        for (int local : order)
            for (int k = 0; k < spec.ranks_per_chip; ++k) m_rank_chip.push_back(n * spec.chips_per_node() + local);
    const auto& links = cluster.topology().links();
    for (std::size_t i = 0; i < links.size(); ++i) m_link_index[links[i].link] = i;
    m_link_owner.assign(links.size(), -1);
    m_maps = cluster.topology().node_maps();
    for (const auto& m : m_maps) {
        hw::Topology::NodeMap inv;
        inv.chip.resize(m.chip.size());
        inv.role.resize(m.role.size());
        for (std::size_t i = 0; i < m.chip.size(); ++i)
            inv.chip[static_cast<std::size_t>(m.chip[i])] = static_cast<int>(i);
        for (std::size_t i = 0; i < m.role.size(); ++i) inv.role[m.role[i]] = i;
        m_inverse.push_back(std::move(inv));
    }
    m_chip_owner.assign(static_cast<std::size_t>(cluster.chips()), -1);
    m_kernel_until.assign(static_cast<std::size_t>(cluster.chips()), k_never);
    m_lag.assign(static_cast<std::size_t>(cluster.chips()), hw::KernelLag{});
    sc_core::sc_spawn_options opts;
    opts.spawn_method();
    opts.set_sensitivity(&m_reap_event);
    opts.dont_initialize();
    sc_core::sc_spawn(
        [this] {
            for (const auto& it : m_finished) m_jobs.erase(it);
            m_finished.clear();
        },
        "collective_reaper", &opts);
}

std::vector<int> CollectiveEngine::first_ranks(int n) const {
    std::vector<int> group;
    for (int r = 0; r < n; ++r) group.push_back(r);
    return group;
}

RankLayout rank_layout(const hw::ClusterSpec& spec, const hw::Topology& topo, const std::vector<int>& rank_chip,
                       const std::vector<int>& group) {
    RankLayout l;
    l.ranks = static_cast<int>(group.size());
    l.ranks_per_chip = spec.ranks_per_chip;
    l.channels = std::max(1, spec.cc_cores / spec.ranks_per_chip);
    l.nodes = spec.nodes;
    l.chips_per_node = spec.chips_per_node();
    l.total_ranks = static_cast<int>(rank_chip.size());
    l.topology = spec.topology.text;
    l.torus_dims = topo.torus_dims();
    std::vector<int> per_node(static_cast<std::size_t>(spec.nodes), 0);
    for (const int rank : group) {
        const int chip = rank_chip.at(static_cast<std::size_t>(rank));
        const int node = chip / spec.chips_per_node();
        l.chip_of_rank.push_back(chip);
        l.slot_of_rank.push_back(rank % spec.ranks_per_chip);
        l.node_of_rank.push_back(node);
        l.position_in_node.push_back(per_node[static_cast<std::size_t>(node)]++);
        l.coords_of_rank.push_back(topo.coords(chip % spec.chips_per_node()));
    }
    return l;
}

RankLayout CollectiveEngine::layout(const std::vector<int>& group) const {
    return rank_layout(m_cluster.spec(), m_cluster.topology(), m_rank_chip, group);
}

void CollectiveEngine::restart() {
    for (int c = 0; c < m_cluster.chips(); ++c) m_cluster.endpoint(c).restart_assignment();
}

void CollectiveEngine::enable_memo(std::set<std::string> skip) {
    m_skip = std::move(skip);
    if (m_memo_on) return;
    m_memo_on = true;
    sc_core::sc_spawn_options opts;
    opts.spawn_method();
    opts.set_sensitivity(&m_close_event);
    opts.dont_initialize();
    sc_core::sc_spawn([this] { close_pending(); }, "collective_memo", &opts);
}

void CollectiveEngine::start(const Schedule& schedule, const RankLayout& layout, Done on_done) {
    std::vector<BatchItem> items(1);
    items[0] = {&schedule, &layout, std::move(on_done)};
    start_batch(std::move(items));
}

void CollectiveEngine::start_batch(std::vector<BatchItem> items, const std::string& context, int source, bool apart) {
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    // A collective without transfers (a group of one) is done at once and is no traffic.
    std::vector<BatchItem> traffic;
    Footprint fp;
    for (auto& b : items) {
        if (!b.schedule->transfers.empty()) {
            fp.add(footprint(b));
            traffic.push_back(std::move(b));
        } else if (b.on_done) {
            b.on_done(now);
        }
    }
    if (traffic.empty() || m_conflict) return;
    // The chips it claims that no period holds: traffic joining a period starts on them with the load their
    // kernels have then, which a replay must find as the recording did.
    std::vector<int> fresh;
    for (const int c : fp.chips)
        if (m_chip_owner[static_cast<std::size_t>(c)] < 0) fresh.push_back(c);
    Period* p = claim(fp);
    if (p == nullptr) return;  // a conflict
    switch (p->mode) {
        case Mode::pending:  // opened now, or earlier at this time
            for (auto& b : traffic) p->pending.push_back(std::move(b));
            p->source = p->source == -2 || p->source == source ? source : -1;
            p->context += "|" + context;
            p->apart = p->apart && apart;
            p->added_delta = sc_core::sc_delta_count();
            m_close_event.notify(sc_core::SC_ZERO_TIME);
            return;
        case Mode::replaying: {
            std::vector<Done*> done;
            for (auto& b : traffic) done.push_back(&b.on_done);
            starts(*p, name(fp, p->base, p->map) + running_loads(*p, fresh), done, sends(traffic) ? source : -1);
            return;
        }
        default: {
            std::vector<Done*> done;
            for (auto& b : traffic) done.push_back(&b.on_done);
            const std::size_t first = p->items;
            // (A plain period keeps no record: its starts need no name.)
            starts(*p, p->mode == Mode::plain ? std::string() : name(fp, p->base, p->map) + running_loads(*p, fresh),
                   done, sends(traffic) ? source : -1);
            if (p->mirror) {
                std::vector<std::size_t> leaders;
                if (!mirror_items(*p, traffic, first, leaders)) {
                    mirror_conflict({p}, "traffic that does not mirror joined it");
                    return;
                }
                for (const std::size_t k : leaders) launch(traffic[k], p->id, first + k);
                return;
            }
            for (std::size_t k = 0; k < traffic.size(); ++k) launch(traffic[k], p->id, first + k);
        }
    }
}

// Point-to-point sends: every item a single transfer (what the caller's quiet bound covers).
bool CollectiveEngine::sends(const std::vector<BatchItem>& items) {
    return std::all_of(items.begin(), items.end(),
                       [](const BatchItem& b) { return b.schedule->transfers.size() == 1; });
}

void CollectiveEngine::launch(const BatchItem& item, int period, std::size_t index) {
    auto job = std::make_unique<Job>();
    job->schedule = item.schedule;
    job->layout = item.layout;
    const auto& tr = item.schedule->transfers;
    ++this->period(period)->active;
    job->on_done = [this, period, index, done = item.on_done](std::uint64_t fs) {
        const std::vector<Done> followers = finish_item(period, index, fs);
        if (done) done(fs);
        for (const Done& d : followers)
            if (d) d(fs);
    };
    job->engine = this;
    job->messages.resize(tr.size());
    job->waiting.resize(tr.size());
    job->dependent_first.assign(tr.size() + 1, 0);
    for (std::size_t i = 0; i < tr.size(); ++i) {
        job->waiting[i] = static_cast<int>(tr[i].deps.size());
        for (int d : tr[i].deps) ++job->dependent_first[static_cast<std::size_t>(d) + 1];
    }
    for (std::size_t i = 0; i < tr.size(); ++i) job->dependent_first[i + 1] += job->dependent_first[i];
    job->dependents.resize(static_cast<std::size_t>(job->dependent_first.back()));
    std::vector<int> next(job->dependent_first.begin(), job->dependent_first.end() - 1);
    for (std::size_t i = 0; i < tr.size(); ++i)
        for (int d : tr[i].deps)
            job->dependents[static_cast<std::size_t>(next[static_cast<std::size_t>(d)]++)] = static_cast<int>(i);
    Job* j = job.get();
    m_jobs.push_back(std::move(job));
    j->self = std::prev(m_jobs.end());
    for (std::size_t i = 0; i < tr.size(); ++i)
        if (j->waiting[i] == 0) submit(j, i);
}

void CollectiveEngine::submit(Job* job, std::size_t i) {
    const Transfer& t = job->schedule->transfers[i];
    if (t.join) {
        complete(job, i, hw::WakeupQueue::now());
        return;
    }
    const RankLayout& l = *job->layout;
    hw::Message& m = job->messages[i];
    m.src_chip = l.chip_of_rank[static_cast<std::size_t>(t.src)];
    m.dst_chip = l.chip_of_rank[static_cast<std::size_t>(t.dst)];
    m.src_slot = l.slot_of_rank[static_cast<std::size_t>(t.src)];
    m.dst_slot = l.slot_of_rank[static_cast<std::size_t>(t.dst)];
    m.channel = t.channel;
    m.stream = job->schedule->stream;
    m.bytes = t.bytes;
    m.reduce = t.reduce;
    m.route = &m_cluster.topology().route(m.src_chip, m.dst_chip);
    // Two words, so that std::function keeps them in place (no allocation per message).
    m.on_done = [job, i](std::uint64_t fs) { complete(job, i, fs); };
    m_cluster.endpoint(m.src_chip).send(&m);
}

void CollectiveEngine::complete(Job* job, std::size_t i, std::uint64_t fs) {
    job->last_fs = std::max(job->last_fs, fs);
    for (int k = job->dependent_first[i]; k < job->dependent_first[i + 1]; ++k) {
        const auto d = static_cast<std::size_t>(job->dependents[static_cast<std::size_t>(k)]);
        if (--job->waiting[d] == 0) job->engine->submit(job, d);
    }
    if (++job->done == job->messages.size()) {
        if (job->on_done) job->on_done(job->last_fs);
        job->engine->m_finished.push_back(job->self);
        job->engine->m_reap_event.notify(sc_core::SC_ZERO_TIME);
    }
}

void CollectiveEngine::set_kernel_load(const std::vector<int>& chips, const hw::KernelLoad& load,
                                       std::uint64_t until_fs) {
    std::map<int, std::vector<int>> by_period;
    for (const int c : chips) {
        m_cluster.set_kernel_load(c, load);
        m_kernel_until[static_cast<std::size_t>(c)] = load.idle() ? k_never : until_fs;
        const int owner = m_chip_owner[static_cast<std::size_t>(c)];
        if (owner >= 0)
            by_period[owner].push_back(c);
        else
            m_lag[static_cast<std::size_t>(c)] = m_cluster.kernel_lag(c);  // every period on it has ended
    }
    for (auto& [id, mine] : by_period) {
        Period& p = *m_periods.at(id);
        if (p.mirror) {
            // Every part's chips change with their leader's.
            const std::set<int> changed(mine.begin(), mine.end());
            for (const auto& part : p.mirror->parts) {
                for (const auto& [a, b] : part.chip) {
                    if (changed.count(a) != changed.count(b)) {
                        mirror_conflict({&p}, fmt::format("the kernel load of chip {} changed and not of chip {}",
                                                          changed.count(a) ? a : b, changed.count(a) ? b : a));
                        return;
                    }
                }
            }
        }
        if (p.mode == Mode::pending) {
            // Part of how the period starts, named once its frame is known (close_pending); nothing has moved
            // in it yet.
            for (const int c : mine) m_lag[static_cast<std::size_t>(c)] = m_cluster.kernel_lag(c);
            p.loads.push_back({p.context.size(), std::move(mine), load});
            continue;
        }
        starts(p, load_key(p, mine, load), {}, -1);
        if (m_conflict) return;
        lag_at_load(p, mine);
        if (m_conflict) return;
    }
}

hw::KernelLag CollectiveEngine::live_lag(const Period& p, int c) const {
    if (p.mirror) {
        for (const auto& part : p.mirror->parts) {
            if (part.chip_images.count(c) == 0) continue;
            for (const auto& [a, b] : part.chip)
                if (b == c) return p.chips0.at(c).lag() + (m_cluster.kernel_lag(a) - p.chips0.at(a).lag());
        }
    }
    return m_cluster.kernel_lag(c);
}

void CollectiveEngine::lag_at_load(Period& p, const std::vector<int>& chips) {
    if (p.mode == Mode::replaying) {
        // The load change was the record's next event (starts).
        const Event& e = p.replay->events[p.next - 1];
        for (const Event::LagRun& run : e.lags)
            for (std::size_t k = run.first; k < run.first + run.count; ++k) p.lags[chips.at(k)] = run.lag;
        for (const int c : chips) m_lag[static_cast<std::size_t>(c)] = p.chips0.at(c).lag() + p.lags[c];
        return;
    }
    for (std::size_t k = 0; k < chips.size(); ++k) {
        const hw::KernelLag now = live_lag(p, chips[k]);
        m_lag[static_cast<std::size_t>(chips[k])] = now;
        if (p.mode != Mode::recording) continue;
        const hw::KernelLag d = now - p.chips0.at(chips[k]).lag();
        hw::KernelLag& last = p.lags[chips[k]];
        if (d == last) continue;
        last = d;
        auto& runs = p.record.events.back().lags;
        if (!runs.empty() && runs.back().first + runs.back().count == k && runs.back().lag == d)
            ++runs.back().count;
        else
            runs.push_back({k, 1, d});
    }
}

bool CollectiveEngine::kernels_end_as_recorded(const Period& p, const Record& r, const std::vector<int>& chips) const {
    if (!r.first_load_known) {
        // Load-change events are named "load:<chips>:<dma>/<memory>;" (load_key).
        for (const Event& e : r.events) {
            if (!e.start || e.key.rfind("load:", 0) != 0) continue;
            const std::size_t end = e.key.find(':', 5);
            std::size_t at = 5;
            while (at < end) {
                const std::size_t comma = std::min(e.key.find(',', at), end);
                r.first_load.emplace(std::stoi(e.key.substr(at, comma - at)), e.rel_fs);
                at = comma + 1;
            }
        }
        r.first_load_known = true;
    }
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    for (const int c : chips) {
        const std::uint64_t until = m_kernel_until[static_cast<std::size_t>(c)];
        if (m_cluster.kernel_load(c).idle() || until == k_never) continue;  // unknown: the replay checks
        const auto it = r.first_load.find(frame_chip(p.base, p.map, c));
        if (it != r.first_load.end() ? until - now != it->second : until - now <= r.events.back().rel_fs) return false;
    }
    return true;
}

std::string CollectiveEngine::running_loads(const Period& p, const std::vector<int>& chips) const {
    std::vector<std::pair<int, hw::KernelLoad>> loads;
    for (const int c : chips) {
        const hw::KernelLoad& load = m_cluster.kernel_load(c);
        if (!load.idle()) loads.emplace_back(frame_chip(p.base, p.map, c), load);
    }
    std::sort(loads.begin(), loads.end());
    std::string key;
    for (const auto& [c, load] : loads) key += fmt::format("{}:{}/{};", c, load.dma, load.memory);
    return key;
}

std::string CollectiveEngine::load_key(const Period& p, std::vector<int>& chips, const hw::KernelLoad& load) const {
    std::vector<std::pair<int, int>> framed;
    for (const int c : chips) framed.emplace_back(frame_chip(p.base, p.map, c), c);
    std::sort(framed.begin(), framed.end());
    std::vector<int> names;
    for (std::size_t k = 0; k < framed.size(); ++k) {
        names.push_back(framed[k].first);
        chips[k] = framed[k].second;
    }
    return fmt::format("load:{}:{}/{};", fmt::join(names, ","), load.dma, load.memory);
}

// ---------------------------------------------------------------------------------------------------
// Footprints and busy periods

void CollectiveEngine::Footprint::add(const Footprint& o) {
    parts.insert(parts.end(), o.parts.begin(), o.parts.end());
    std::vector<std::size_t> l;
    std::set_union(links.begin(), links.end(), o.links.begin(), o.links.end(), std::back_inserter(l));
    links = std::move(l);
    std::vector<int> c;
    std::set_union(chips.begin(), chips.end(), o.chips.begin(), o.chips.end(), std::back_inserter(c));
    chips = std::move(c);
}

CollectiveEngine::Footprint CollectiveEngine::footprint(const BatchItem& b) {
    Traffic& t = m_traffic[{b.schedule, b.layout}];
    if (t.schedule == nullptr) {
        t.schedule = b.schedule;
        t.layout = b.layout;
        std::set<std::size_t> links;
        std::set<int> chips;
        for (const Transfer& x : b.schedule->transfers) {
            const int src = b.layout->chip_of_rank[static_cast<std::size_t>(x.src)];
            const int dst = b.layout->chip_of_rank[static_cast<std::size_t>(x.dst)];
            chips.insert(src);
            chips.insert(dst);
            for (const hw::PacketSink* hop : m_cluster.topology().route(src, dst)) {
                const auto it = m_link_index.find(hop);
                if (it != m_link_index.end()) links.insert(it->second);
            }
        }
        t.node = *chips.begin() / m_cluster.spec().chips_per_node();
        t.links.assign(links.begin(), links.end());
        t.chips.assign(chips.begin(), chips.end());
    }
    Footprint out;
    out.parts = {&t};
    out.links = t.links;
    out.chips = t.chips;
    return out;
}

void CollectiveEngine::prepare(Traffic& t) {
    if (!t.hop_first.empty()) return;
    hw::Topology& topo = m_cluster.topology();
    const int first = t.node * m_cluster.spec().chips_per_node();
    for (const Transfer& x : t.schedule->transfers) {
        const int src = t.layout->chip_of_rank[static_cast<std::size_t>(x.src)];
        const int dst = t.layout->chip_of_rank[static_cast<std::size_t>(x.dst)];
        t.ends.push_back(src - first);
        t.ends.push_back(dst - first);
        t.hop_first.push_back(t.hops.size());
        if (m_maps.size() == 1) continue;  // names need no hops (traffic_name)
        const hw::Route& route = topo.route(src, dst);
        for (std::size_t k = 0; k + 1 < route.size(); ++k) {
            const std::size_t l = m_link_index.at(route[k]);
            t.hops.emplace_back(topo.link_node(l) - t.node, topo.link_role(l));
        }
    }
    t.hop_first.push_back(t.hops.size());
    // What no map changes, hashed once: the transfers' bytes, reductions, streams and dependencies, with their
    // count.
    // Dependencies go through two multiplicative lanes (one multiply each per value) and then into the
    // hash: a 256-rank mesh all-reduce has 16.6 M of them, which the hash's mixing per value made ~80 ms.
    FieldHash h;
    h.add(t.schedule->transfers.size());
    h.add(static_cast<std::uint64_t>(t.schedule->stream));
    for (const Transfer& x : t.schedule->transfers) {
        h.add(x.bytes);
        h.add((x.reduce ? 1 : 0) + (x.join ? 2 : 0));
        // The DMA rings that move it (no map moves a rank to another place on its chip).
        h.add(static_cast<std::uint64_t>(static_cast<std::int64_t>(x.channel)));
        h.add(static_cast<std::uint64_t>(t.layout->slot_of_rank[static_cast<std::size_t>(x.src)]));
        h.add(static_cast<std::uint64_t>(t.layout->slot_of_rank[static_cast<std::size_t>(x.dst)]));
        h.add(x.deps.size());
        if (x.deps.empty()) continue;
        std::uint64_t p = 0x243f6a8885a308d3ull, q = 0x13198a2e03707344ull;
        for (const int d : x.deps) {
            const auto v = static_cast<std::uint64_t>(static_cast<std::int64_t>(d));
            p = (p + v) * 0x9e3779b97f4a7c15ull;
            q = (q ^ v) * 0xc2b2ae3d27d4eb4full;
        }
        h.add(p);
        h.add(q);
    }
    t.shape = {h.a, h.b};
}

// The traffic's name in its own frame (its lowest node) under a node map: a 128-bit hash of its shape
// (prepare) and every transfer's chips and, with several maps, every hop but the last (the receiving
// chip), value by value rather than through text: footprints are named in every process that simulates a
// step, and the text was most of their cost. Names are compared only between runs of one executable (records
// travel between a run's processes, and to disk under --cache keyed by the executable).
const std::string& CollectiveEngine::traffic_name(Traffic& t, std::size_t map) {
    for (const auto& [m, name] : t.names)
        if (m == map) return name;
    prepare(t);
    const int per_node = m_cluster.spec().chips_per_node();
    const auto& chip = m_maps[map].chip;
    const auto& role = m_maps[map].role;
    const auto image = [&](int rel) {
        const int node = rel / per_node;
        return static_cast<std::uint64_t>(node * per_node + chip[static_cast<std::size_t>(rel - node * per_node)]);
    };
    const bool hops = m_maps.size() > 1;
    FieldHash h;
    h.add(t.shape[0]);
    h.add(t.shape[1]);
    const auto& tr = t.schedule->transfers;
    for (std::size_t i = 0; i < tr.size(); ++i) {
        h.add(image(t.ends[2 * i]));
        h.add(image(t.ends[2 * i + 1]));
        if (!hops) continue;
        h.add(t.hop_first[i + 1] - t.hop_first[i]);
        for (std::size_t k = t.hop_first[i]; k < t.hop_first[i + 1]; ++k) {
            h.add(static_cast<std::uint64_t>(t.hops[k].first));
            h.add(role[t.hops[k].second]);
        }
    }
    t.names.emplace_back(map, h.hex());
    return t.names.back().second;
}

std::string CollectiveEngine::name(const Footprint& fp, int base, std::size_t map) {
    std::string k;
    for (Traffic* t : fp.parts) k += fmt::format("{}+{};", traffic_name(*t, map), t->node - base);
    return k;
}

// The first of the node maps in the order of the mapped transfers: their chips, item by item and transfer
// by transfer, then (all chips alike) their hops. Traffic that is the image of other traffic under a map
// reads the same under its own first map as the other under its own, nearly always (a map that leaves the
// traffic as it is can pick another first map for one than the other: a missed replay, never a wrong one).
std::size_t CollectiveEngine::frame_map(const Footprint& fp) {
    if (m_maps.size() == 1) return 0;
    std::vector<const Traffic*> key;
    for (Traffic* t : fp.parts) {
        prepare(*t);
        key.push_back(t);
    }
    const auto known = m_frame_maps.find(key);
    if (known != m_frame_maps.end()) return known->second;
    const int per_node = m_cluster.spec().chips_per_node();
    // <0: map a reads first; 0: alike so far.
    const auto compare = [&](std::size_t a, std::size_t b) {
        const auto& ca = m_maps[a].chip;
        const auto& cb = m_maps[b].chip;
        for (const Traffic* t : key) {
            for (const int e : t->ends) {
                const auto local = static_cast<std::size_t>(e % per_node);
                if (ca[local] != cb[local]) return ca[local] - cb[local];
            }
        }
        const auto& ra = m_maps[a].role;
        const auto& rb = m_maps[b].role;
        for (const Traffic* t : key) {
            for (const auto& [node, role] : t->hops)
                if (ra[role] != rb[role]) return ra[role] < rb[role] ? -1 : 1;
        }
        return 0;
    };
    std::size_t best = 0;
    for (std::size_t m = 1; m < m_maps.size(); ++m)
        if (compare(m, best) < 0) best = m;
    m_frame_maps.emplace(std::move(key), best);
    return best;
}

int CollectiveEngine::frame_chip(int base, std::size_t map, int chip) const {
    const int per_node = m_cluster.spec().chips_per_node();
    return (chip / per_node - base) * per_node + m_maps[map].chip[static_cast<std::size_t>(chip % per_node)];
}

int CollectiveEngine::frame_unchip(int base, std::size_t map, int rel) const {
    const int per_node = m_cluster.spec().chips_per_node();
    const int node = rel >= 0 ? rel / per_node : -((-rel + per_node - 1) / per_node);
    return (base + node) * per_node + m_inverse[map].chip[static_cast<std::size_t>(rel - node * per_node)];
}

std::pair<int, std::size_t> CollectiveEngine::frame_link(int base, std::size_t map, std::size_t link) const {
    const hw::Topology& topo = m_cluster.topology();
    return {topo.link_node(link) - base, m_maps[map].role[topo.link_role(link)]};
}

CollectiveEngine::Period* CollectiveEngine::period(int id) {
    int last = id;
    for (auto it = m_merged_into.find(last); it != m_merged_into.end(); it = m_merged_into.find(last))
        last = it->second;
    if (last != id) m_merged_into[id] = last;  // shortcut the chain for the next lookup
    const auto it = m_periods.find(last);
    return it == m_periods.end() ? nullptr : it->second.get();
}

CollectiveEngine::Period& CollectiveEngine::new_period(Mode mode) {
    auto p = std::make_unique<Period>();
    p->id = m_next_period++;
    p->mode = mode;
    Period& r = *p;
    m_periods.emplace(r.id, std::move(p));
    return r;
}

// Claims the free links and chips of `fp` for `p`: a chip claimed while idle restarts its assignments; a
// recording period notes the counters it starts from.
void CollectiveEngine::take(Period& p, const Footprint& fp) {
    for (const std::size_t l : fp.links) {
        if (m_link_owner[l] == p.id) continue;
        m_link_owner[l] = p.id;
        p.links.insert(std::upper_bound(p.links.begin(), p.links.end(), l), l);
        if (p.mode == Mode::recording || (m_on_period_end && p.mode != Mode::replaying))
            p.links0[l] = m_cluster.topology().links()[l].link->stats();
    }
    for (const int c : fp.chips) {
        auto& owner = m_chip_owner[static_cast<std::size_t>(c)];
        if (owner == p.id) continue;
        owner = p.id;
        p.chips.insert(std::upper_bound(p.chips.begin(), p.chips.end(), c), c);
        m_cluster.endpoint(c).restart_assignment();
        if (p.mode == Mode::recording || (m_on_period_end && p.mode != Mode::replaying))
            p.chips0[c] = m_cluster.chip_stats(c);
    }
}

CollectiveEngine::Period* CollectiveEngine::claim(const Footprint& fp) {
    std::set<int> owners;
    for (const std::size_t l : fp.links)
        if (m_link_owner[l] >= 0) owners.insert(m_link_owner[l]);
    for (const int c : fp.chips)
        if (m_chip_owner[static_cast<std::size_t>(c)] >= 0) owners.insert(m_chip_owner[static_cast<std::size_t>(c)]);
    if (owners.empty()) {
        Period& p = new_period(m_memo_on ? Mode::pending : Mode::plain);
        p.base = fp.chips.front() / m_cluster.spec().chips_per_node();
        p.start_fs = sc_core::sc_time_stamp().value();
        take(p, fp);
        return &p;
    }
    Period* p = m_periods.at(*owners.begin()).get();
    if (owners.size() == 1) {
        if (p->mode == Mode::replaying) {
            // What joins a replayed period must be in the record's footprint; the parts it did not hold yet
            // are free (no other period owns them), as they were when the recording claimed them.
            const Footprint& all = p->replay_at;
            if (std::includes(all.links.begin(), all.links.end(), fp.links.begin(), fp.links.end()) &&
                std::includes(all.chips.begin(), all.chips.end(), fp.chips.begin(), fp.chips.end())) {
                replay_take(*p, fp);
                return p;
            }
            conflict(*p, "traffic outside its footprint joined a replay");
            return nullptr;
        }
        take(*p, fp);
        return p;
    }
    // Several periods: one plain period from now on (a replayed one cannot be merged).
    for (const int id : owners) {
        if (m_periods.at(id)->mode == Mode::replaying) {
            conflict(*m_periods.at(id), "traffic joined a replay and another period");
            return nullptr;
        }
    }
    // Every mirrored period among them is named (a retry mirrors none of them).
    std::vector<const Period*> mirrored;
    for (const int id : owners)
        if (m_periods.at(id)->mirror) mirrored.push_back(m_periods.at(id).get());
    if (!mirrored.empty()) {
        mirror_conflict(mirrored, "traffic joined it and another period");
        return nullptr;
    }
    for (const int id : owners) {
        Period& q = *m_periods.at(id);
        if (q.mode != Mode::pending) continue;
        q.mode = Mode::plain;
        std::vector<BatchItem> items = std::move(q.pending);
        q.pending.clear();
        for (const BatchItem& item : items) launch(item, q.id, q.items++);
    }
    p->mode = Mode::plain;
    m_memo_stats.merged += owners.size() - 1;
    for (const int id : owners) {
        if (id == p->id) continue;
        std::unique_ptr<Period> q = std::move(m_periods.at(id));
        m_periods.erase(id);
        m_merged_into[id] = p->id;
        p->active += q->active;
        p->start_fs = std::min(p->start_fs, q->start_fs);
        p->links0.insert(q->links0.begin(), q->links0.end());
        p->chips0.insert(q->chips0.begin(), q->chips0.end());
        for (const std::size_t l : q->links) m_link_owner[l] = p->id;
        for (const int c : q->chips) m_chip_owner[static_cast<std::size_t>(c)] = p->id;
        std::vector<std::size_t> links;
        std::set_union(p->links.begin(), p->links.end(), q->links.begin(), q->links.end(), std::back_inserter(links));
        p->links = std::move(links);
        std::vector<int> chips;
        std::set_union(p->chips.begin(), p->chips.end(), q->chips.begin(), q->chips.end(), std::back_inserter(chips));
        p->chips = std::move(chips);
    }
    take(*p, fp);
    return p;
}

// Everything that starts at this time on a free footprint begins one period: closed once a whole delta
// cycle has passed without another start joining it, then replayed, or simulated and recorded.
void CollectiveEngine::close_pending() {
    std::vector<int> ready;
    bool waiting = false;
    for (const auto& [id, p] : m_periods) {
        if (p->mode != Mode::pending) continue;
        if (sc_core::sc_delta_count() <= p->added_delta + 1)
            waiting = true;
        else
            ready.push_back(id);
    }
    if (waiting) m_close_event.notify(sc_core::SC_ZERO_TIME);
    for (const int id : ready) {
        Period& p = *m_periods.at(id);
        std::vector<BatchItem> items = std::move(p.pending);
        p.pending.clear();
        Footprint fp;
        for (const auto& b : items) fp.add(footprint(b));
        // Its frame, from everything that opened it (a tensor-parallel group in one plane of a torus leaves
        // the third dimension's reflection open; the data-parallel buckets starting with it settle it).
        p.map = frame_map(fp);
        std::string context;
        std::size_t from = 0;
        for (auto& l : p.loads) {
            context += p.context.substr(from, l.at - from) + load_key(p, l.chips, l.load);
            from = l.at;
        }
        context += p.context.substr(from);
        p.loads.clear();
        p.key = name(fp, p.base, p.map) + "@" + context + "@" + running_loads(p, p.chips);
        const auto it = m_memo.find(p.key);
        Footprint placed, at;
        bool free = it != m_memo.end() && m_skip.count(p.key) == 0 && place(it->second, p.base, p.map, placed);
        if (free) {
            at = first_parts(it->second, placed);
            for (const std::size_t l : at.links) free = free && (m_link_owner[l] < 0 || m_link_owner[l] == id);
            for (const int c : at.chips)
                free = free && (m_chip_owner[static_cast<std::size_t>(c)] < 0 ||
                                m_chip_owner[static_cast<std::size_t>(c)] == id);
            // And idle: a replay starts from idle chips (endpoint, fabric, memory) and links, the state a
            // recorded period ends in. An idle memory or fabric behaves the same whatever it did before (its
            // FIFO is free, and a turnaround is only charged between back-to-back requests).
            const std::uint64_t now = sc_core::sc_time_stamp().value();
            for (const std::size_t l : at.links) free = free && m_cluster.topology().links()[l].link->idle(now);
            for (const int c : at.chips) free = free && m_cluster.chip_idle(c, now);
        }
        // And not bound to meet a conflict: traffic of other sources must be able to come when the record
        // has it, or unable to come before the record ends when it has none.
        bool quiet = true;
        if (free && m_quiet && p.source >= 0) {
            const std::uint64_t now = sc_core::sc_time_stamp().value();
            const auto& events = it->second.events;
            const auto foreign =
                std::find_if(events.begin(), events.end(), [](const Event& e) { return e.start && e.foreign; });
            const std::uint64_t bound = m_quiet(placed.chips, p.source);
            quiet = foreign == events.end() ? bound > now + events.back().rel_fs : bound <= now + foreign->rel_fs;
            free = quiet;
        }
        // And the kernels running on its chips end when the record has them end.
        bool kernels = true;
        if (free) {
            kernels = kernels_end_as_recorded(p, it->second, at.chips);
            free = kernels;
        }
        if (it != m_memo.end() && !free) {
            logger("memo")->trace("not replayed at {} fs ({}): {}", sc_core::sc_time_stamp().value(),
                                  m_skip.count(p.key) ? "skipped"
                                  : !quiet            ? "other traffic may come"
                                  : !kernels          ? "a running kernel ends off the record"
                                                      : "footprint busy",
                                  p.key.substr(p.key.find('@')));
        }
        if (free) {
            begin_replay(p, it->second, placed, at);
            for (auto& b : items) p.on_done.push_back(std::move(b.on_done));
            p.items = items.size();
            arm(p);
            continue;
        }
        begin_record(p);
        std::vector<Done*> done;
        for (auto& b : items) done.push_back(&b.on_done);
        starts(p, name(fp, p.base, p.map), done, p.source);
        // Alike groups kept apart: only the first is simulated (docs/adr/0009).
        std::vector<std::size_t> leaders;
        if (p.apart && m_skip.count(k_no_mirror) == 0 && m_skip.count("mirror|" + p.key) == 0 &&
            mirror_items(p, items, 0, leaders)) {
            ++m_memo_stats.mirrored;
            for (const std::size_t k : leaders) launch(items[k], id, k);
            continue;
        }
        for (std::size_t k = 0; k < items.size(); ++k) launch(items[k], id, k);
    }
}

// A started item of a period finished (simulated): recorded, with the items that follow it in a mirrored
// period, and the period ends if it was the last.
std::vector<CollectiveEngine::Done> CollectiveEngine::finish_item(int id, std::size_t item, std::uint64_t fs) {
    Period* p = period(id);
    if (p == nullptr) return {};
    --p->active;
    if (p->mode == Mode::recording) p->record.events.push_back({false, fs - p->start_fs, {}, item, 0, false, {}});
    std::vector<Done> followers;
    if (p->mirror) {
        const auto it = p->mirror->followers.find(item);
        if (it != p->mirror->followers.end()) {
            for (auto& [index, done] : it->second) {
                p->record.events.push_back({false, fs - p->start_fs, {}, index, 0, false, {}});
                followers.push_back(std::move(done));
            }
            p->mirror->followers.erase(it);
        }
    }
    maybe_end(*p);
    return followers;
}

bool CollectiveEngine::idle(const Period& p) const {
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    for (const std::size_t l : p.links)
        if (!m_cluster.topology().links()[l].link->idle(now)) return false;
    for (const int c : p.chips)
        if (!m_cluster.chip_idle(c, now)) return false;
    return true;
}

// A period whose traffic has finished and whose footprint is idle ends: its record is kept, and its links
// and chips are free for others.
void CollectiveEngine::maybe_end(Period& p) {
    if (p.active != 0 || p.mode == Mode::replaying || p.mode == Mode::pending || !idle(p)) return;
    if (!p.replayed) ++m_memo_stats.simulated;
    if (p.mirror) mirror_counters(p);
    if (p.mode == Mode::recording && m_memo.count(p.key) == 0) {
        Record& r = p.record;
        const hw::Topology& topo = m_cluster.topology();
        // What it held when it began first: a replay claims those then, and the rest when traffic reaches it.
        std::vector<std::size_t> links = p.first_links;
        for (const std::size_t l : p.links)
            if (!std::binary_search(p.first_links.begin(), p.first_links.end(), l)) links.push_back(l);
        std::vector<int> chips = p.first_chips;
        for (const int c : p.chips)
            if (!std::binary_search(p.first_chips.begin(), p.first_chips.end(), c)) chips.push_back(c);
        r.first_links = p.first_links.size();
        r.first_chips = p.first_chips.size();
        for (const std::size_t l : links) {
            r.links.push_back(frame_link(p.base, p.map, l));
            const hw::LinkStats& a = p.links0.at(l);
            const hw::LinkStats& b = topo.links()[l].link->stats();
            r.link_stats.push_back({b.bytes - a.bytes, b.packets - a.packets, b.busy_fs - a.busy_fs});
        }
        for (const int c : chips) {
            r.chips.push_back(frame_chip(p.base, p.map, c));
            r.chip_stats.push_back(m_cluster.chip_stats(c) - p.chips0.at(c));
        }
        logger("memo")->trace("recorded {} fs to {} fs, {} items: {}", p.start_fs, sc_core::sc_time_stamp().value(),
                              p.items, p.key.substr(p.key.find('@')));
        m_memo.emplace(p.key, std::move(r));
        ++m_memo_stats.recorded;
    }
    if (m_on_period_end) m_on_period_end(use(p));
    for (const std::size_t l : p.links) m_link_owner[l] = -1;
    for (const int c : p.chips) m_chip_owner[static_cast<std::size_t>(c)] = -1;
    if (p.wake >= 0) m_wake_period[static_cast<std::size_t>(p.wake)] = -1;
    m_periods.erase(p.id);
}

CollectiveEngine::PeriodUse CollectiveEngine::use(const Period& p) const {
    PeriodUse u;
    u.start_fs = p.start_fs;
    u.end_fs = sc_core::sc_time_stamp().value();
    const hw::Topology& topo = m_cluster.topology();
    for (const std::size_t l : p.links) {
        const std::uint64_t busy = p.replayed ? p.replay->link_stats[p.replay_link.at(l)].busy_fs
                                              : topo.links()[l].link->stats().busy_fs - p.links0.at(l).busy_fs;
        if (busy > 0) u.link_busy.emplace_back(l, busy);
    }
    for (const int c : p.chips) {
        const std::uint64_t busy =
            p.replayed ? p.replay->chip_stats[p.replay_chip.at(c)].endpoint.dma_busy_fs
                       : m_cluster.chip_stats(c).endpoint.dma_busy_fs - p.chips0.at(c).endpoint.dma_busy_fs;
        if (busy > 0) u.dma_busy.emplace_back(c, busy);
    }
    return u;
}

// What starts in a period: during a recording, an event; during a replay, the next event of the record, or
// a conflict. False when the traffic is not to be simulated.
bool CollectiveEngine::starts(Period& p, const std::string& key, std::vector<Done*> done, int sender) {
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    if (p.mode == Mode::replaying) {
        const auto& events = p.replay->events;
        const Event* e = p.next < events.size() ? &events[p.next] : nullptr;
        if (e == nullptr || !e->start || p.start_fs + e->rel_fs != now || e->key != key || e->count != done.size()) {
            conflict(p, fmt::format(
                            "at +{} fs a start the record does not have: {} (expected: {})", now - p.start_fs, key,
                            e == nullptr ? std::string("nothing")
                                         : fmt::format("{} at +{} fs", e->start ? e->key : "a completion", e->rel_fs)));
            return false;
        }
        ++p.next;
        for (Done* d : done) p.on_done.push_back(std::move(*d));
        p.items += done.size();
        arm(p);
        return false;
    }
    if (p.mode == Mode::recording) {
        const bool foreign = sender >= 0 && p.source >= 0 && sender != p.source;
        p.record.events.push_back({true, now - p.start_fs, key, p.items, done.size(), foreign, {}});
    }
    p.items += done.size();
    return true;
}

void CollectiveEngine::begin_record(Period& p) {
    p.mode = Mode::recording;
    p.start_fs = sc_core::sc_time_stamp().value();
    p.first_links = p.links;
    p.first_chips = p.chips;
    for (const std::size_t l : p.links) p.links0[l] = m_cluster.topology().links()[l].link->stats();
    for (const int c : p.chips) p.chips0[c] = m_cluster.chip_stats(c);
}

// ---------------------------------------------------------------------------------------------------
// Mirrored parts (docs/adr/0009)

bool CollectiveEngine::mirror_items(Period& p, std::vector<BatchItem>& items, std::size_t first,
                                    std::vector<std::size_t>& leaders) {
    std::vector<Footprint> fps;
    for (const BatchItem& b : items) fps.push_back(footprint(b));
    std::unique_ptr<Mirror> opened;
    Mirror* m = p.mirror.get();
    std::vector<std::size_t> part_of(items.size());
    if (m == nullptr) {
        // Parts: the items connected through shared chips or links, numbered in the order of their first item.
        std::vector<std::size_t> root(items.size());
        for (std::size_t k = 0; k < root.size(); ++k) root[k] = k;
        const auto find = [&](std::size_t k) {
            while (root[k] != k) k = root[k] = root[root[k]];
            return k;
        };
        std::map<int, std::size_t> chip_item;
        std::map<std::size_t, std::size_t> link_item;
        for (std::size_t k = 0; k < items.size(); ++k) {
            for (const int c : fps[k].chips) {
                const auto [it, fresh] = chip_item.emplace(c, k);
                if (!fresh) root[find(k)] = find(it->second);
            }
            for (const std::size_t l : fps[k].links) {
                const auto [it, fresh] = link_item.emplace(l, k);
                if (!fresh) root[find(k)] = find(it->second);
            }
        }
        std::map<std::size_t, std::size_t> number;  // a part's root item -> the part
        for (std::size_t k = 0; k < items.size(); ++k)
            part_of[k] = number.emplace(find(k), number.size()).first->second;
        if (number.size() < 2) return false;
        opened = std::make_unique<Mirror>();
        m = opened.get();
        m->parts.resize(number.size());
    } else {
        // Joining: each item keeps to the one part it touches.
        for (std::size_t k = 0; k < items.size(); ++k) {
            std::set<std::size_t> touched;
            for (const int c : fps[k].chips) {
                const auto it = m->chip_part.find(c);
                if (it != m->chip_part.end()) touched.insert(it->second);
            }
            for (const std::size_t l : fps[k].links) {
                const auto it = m->link_part.find(l);
                if (it != m->link_part.end()) touched.insert(it->second);
            }
            if (touched.size() != 1) return false;
            part_of[k] = *touched.begin();
        }
    }
    // What the items touch joins their parts (parts stay disjoint).
    for (std::size_t k = 0; k < items.size(); ++k) {
        for (const int c : fps[k].chips) {
            const auto [it, fresh] = m->chip_part.emplace(c, part_of[k]);
            if (!fresh && it->second != part_of[k]) return false;
        }
        for (const std::size_t l : fps[k].links) {
            const auto [it, fresh] = m->link_part.emplace(l, part_of[k]);
            if (!fresh && it->second != part_of[k]) return false;
        }
    }
    std::vector<std::vector<std::size_t>> by_part(m->parts.size());
    for (std::size_t k = 0; k < items.size(); ++k) by_part[part_of[k]].push_back(k);
    // A follower's items, in order, are the images of its leader's; its maps stay within it, and the
    // kernels' load of every chip is its image's (it shapes the traffic).
    const auto follows = [&](std::size_t j, Mirror::Part& part) {
        const auto& mine = by_part[j];
        const auto& lead = by_part[part.leader];
        if (mine.size() != lead.size()) return false;
        for (std::size_t i = 0; i < lead.size(); ++i)
            if (!mirrors(items[lead[i]], items[mine[i]], part)) return false;
        for (const auto& [a, b] : part.chip) {
            if (m->chip_part.at(b) != j) return false;
            if (m_cluster.kernel_load(a) != m_cluster.kernel_load(b)) return false;
        }
        for (const auto& [a, b] : part.link)
            if (m->link_part.at(b) != j) return false;
        return true;
    };
    if (opened) {
        // Each part follows the first leader before it that it mirrors, or leads.
        bool any = false;
        for (std::size_t j = 0; j < m->parts.size(); ++j) {
            m->parts[j].leader = j;
            for (std::size_t l = 0; l < j; ++l) {
                if (m->parts[l].leader != l) continue;
                Mirror::Part trial;
                trial.leader = l;
                if (follows(j, trial)) {
                    m->parts[j] = std::move(trial);
                    any = true;
                    break;
                }
            }
        }
        if (!any) return false;
        for (std::size_t j = 0; j < m->parts.size(); ++j) m_memo_stats.followers += m->parts[j].leader != j ? 1 : 0;
    } else {
        for (std::size_t j = 0; j < m->parts.size(); ++j)
            if (m->parts[j].leader != j && !follows(j, m->parts[j])) return false;
    }
    for (std::size_t j = 0; j < m->parts.size(); ++j) {
        const std::size_t l = m->parts[j].leader;
        if (l == j) {
            leaders.insert(leaders.end(), by_part[j].begin(), by_part[j].end());
            continue;
        }
        for (std::size_t i = 0; i < by_part[l].size(); ++i) {
            const std::size_t k = by_part[j][i];
            m->followers[first + by_part[l][i]].push_back({first + k, std::move(items[k].on_done)});
        }
    }
    std::sort(leaders.begin(), leaders.end());  // launched in batch order
    if (opened) p.mirror = std::move(opened);
    return true;
}

bool CollectiveEngine::mirrors(const BatchItem& a, const BatchItem& b, Mirror::Part& part) {
    const auto& ta = a.schedule->transfers;
    const auto& tb = b.schedule->transfers;
    if (ta.size() != tb.size() || a.schedule->stream != b.schedule->stream) return false;
    const bool same = a.schedule == b.schedule;
    const auto map_chip = [&](int x, int y) {
        const auto [it, fresh] = part.chip.emplace(x, y);
        return fresh ? part.chip_images.insert(y).second : it->second == y;
    };
    const auto map_link = [&](std::size_t x, std::size_t y) {
        const auto [it, fresh] = part.link.emplace(x, y);
        return fresh ? part.link_images.insert(y).second : it->second == y;
    };
    hw::Topology& topo = m_cluster.topology();
    for (std::size_t i = 0; i < ta.size(); ++i) {
        const Transfer& x = ta[i];
        const Transfer& y = tb[i];
        if (!same && (x.bytes != y.bytes || x.reduce != y.reduce || x.join != y.join || x.channel != y.channel ||
                      x.deps != y.deps))
            return false;
        const int xs = a.layout->chip_of_rank[static_cast<std::size_t>(x.src)];
        const int xd = a.layout->chip_of_rank[static_cast<std::size_t>(x.dst)];
        const int ys = b.layout->chip_of_rank[static_cast<std::size_t>(y.src)];
        const int yd = b.layout->chip_of_rank[static_cast<std::size_t>(y.dst)];
        if (!map_chip(xs, ys) || !map_chip(xd, yd)) return false;
        // Hop by hop onto links of the same bandwidth and latency (the last hop is the receiving chip).
        const hw::Route& rx = topo.route(xs, xd);
        const hw::Route& ry = topo.route(ys, yd);
        if (rx.size() != ry.size()) return false;
        for (std::size_t h = 0; h + 1 < rx.size(); ++h) {
            const auto ix = m_link_index.find(rx[h]);
            const auto iy = m_link_index.find(ry[h]);
            if (ix == m_link_index.end() || iy == m_link_index.end()) return false;
            const hw::LinkSpec& sx = topo.links()[ix->second].link->spec();
            const hw::LinkSpec& sy = topo.links()[iy->second].link->spec();
            if (sx.bandwidth.bytes_per_s != sy.bandwidth.bytes_per_s || sx.latency.seconds != sy.latency.seconds)
                return false;
            if (!map_link(ix->second, iy->second)) return false;
        }
    }
    return true;
}

void CollectiveEngine::mirror_counters(Period& p) {
    const hw::Topology& topo = m_cluster.topology();
    for (const Mirror::Part& part : p.mirror->parts) {
        for (const auto& [a, b] : part.link) {
            const hw::LinkStats& was = p.links0.at(a);
            const hw::LinkStats& now = topo.links()[a].link->stats();
            m_cluster.topology().mutable_link(b).add_stats(
                {now.bytes - was.bytes, now.packets - was.packets, now.busy_fs - was.busy_fs});
        }
        for (const auto& [a, b] : part.chip) m_cluster.add_chip_stats(b, m_cluster.chip_stats(a) - p.chips0.at(a));
    }
    p.mirror.reset();
}

// ---------------------------------------------------------------------------------------------------
// Records

bool CollectiveEngine::place(const Record& r, int base, std::size_t map, Footprint& placed) const {
    const hw::Topology& topo = m_cluster.topology();
    const auto& inverse = m_inverse[map];
    for (const auto& [node, role] : r.links) {
        const std::size_t l = topo.link_at(base + node, inverse.role[role]);
        if (l == hw::Topology::k_no_link) return false;
        placed.links.push_back(l);
    }
    for (const int rel : r.chips) {
        const int c = frame_unchip(base, map, rel);
        if (c < 0 || c >= m_cluster.chips()) return false;
        placed.chips.push_back(c);
    }
    return true;
}

CollectiveEngine::Footprint CollectiveEngine::first_parts(const Record& r, const Footprint& placed, bool all) {
    Footprint f;
    const auto links = static_cast<std::ptrdiff_t>(all ? placed.links.size() : r.first_links);
    const auto chips = static_cast<std::ptrdiff_t>(all ? placed.chips.size() : r.first_chips);
    f.links.assign(placed.links.begin(), placed.links.begin() + links);
    f.chips.assign(placed.chips.begin(), placed.chips.begin() + chips);
    std::sort(f.links.begin(), f.links.end());
    std::sort(f.chips.begin(), f.chips.end());
    return f;
}

// Counters are added when a part is claimed, not all at the start: until then another period may hold it
// and be recording its own counters there.
void CollectiveEngine::replay_take(Period& p, const Footprint& parts) {
    for (const std::size_t l : parts.links) {
        if (m_link_owner[l] != p.id)
            m_cluster.topology().mutable_link(l).add_stats(p.replay->link_stats[p.replay_link.at(l)]);
    }
    for (const int c : parts.chips) {
        if (m_chip_owner[static_cast<std::size_t>(c)] == p.id) continue;
        p.chips0[c] = m_cluster.chip_stats(c);
        m_cluster.add_chip_stats(c, p.replay->chip_stats[p.replay_chip.at(c)]);
    }
    take(p, parts);
}

void CollectiveEngine::begin_replay(Period& p, const Record& r, const Footprint& placed, const Footprint& at) {
    ++m_memo_stats.replayed;
    p.mode = Mode::replaying;
    p.replayed = true;
    p.start_fs = sc_core::sc_time_stamp().value();
    for (std::size_t k = 0; k < placed.links.size(); ++k) p.replay_link[placed.links[k]] = k;
    for (std::size_t k = 0; k < placed.chips.size(); ++k) p.replay_chip[placed.chips[k]] = k;
    p.replay_at = first_parts(r, placed, true);
    p.replay = &r;
    // What it holds from the start (the traffic that opened it claimed some of that already).
    for (const std::size_t l : at.links)
        m_cluster.topology().mutable_link(l).add_stats(r.link_stats[p.replay_link.at(l)]);
    for (const int c : at.chips) {
        p.chips0[c] = m_cluster.chip_stats(c);
        m_cluster.add_chip_stats(c, r.chip_stats[p.replay_chip.at(c)]);
    }
    take(p, at);
    p.next = 1;  // events[0] is this start
    for (std::size_t w = 0; w < m_wake_period.size() && p.wake < 0; ++w)
        if (m_wake_period[w] < 0) p.wake = static_cast<int>(w);
    if (p.wake < 0) {
        p.wake = static_cast<int>(m_wakes.size());
        m_wake_period.push_back(-1);
        m_wakes.emplace_back([this, w = p.wake] {
            const int id = m_wake_period[static_cast<std::size_t>(w)];
            if (id >= 0) deliver(id);
        });
    }
    m_wake_period[static_cast<std::size_t>(p.wake)] = p.id;
}

// Wakes for the next completion, or just after the next start is due (it must have come by then).
void CollectiveEngine::arm(Period& p) {
    const Event& e = p.replay->events[p.next];
    const std::uint64_t at = p.start_fs + e.rel_fs + (e.start ? 1 : 0);
    m_wakes[static_cast<std::size_t>(p.wake)].notify(at - sc_core::sc_time_stamp().value());
}

void CollectiveEngine::deliver(int id) {
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    for (;;) {
        Period* p = period(id);
        if (p == nullptr || p->mode != Mode::replaying) return;
        const auto& events = p->replay->events;
        const Event& e = events[p->next];
        const std::uint64_t at = p->start_fs + e.rel_fs;
        if (e.start) {
            if (at < now)
                conflict(*p, fmt::format("a recorded start did not come: {} at +{} fs", e.key, e.rel_fs));
            else
                arm(*p);
            return;
        }
        if (at > now) {
            arm(*p);
            return;
        }
        Done cb = std::move(p->on_done[e.item]);
        // The last completion ends the period first: what its callback starts begins a new one.
        if (++p->next == events.size()) {
            p->mode = Mode::plain;
            maybe_end(*p);
        }
        if (cb) cb(at);
    }
}

void CollectiveEngine::mirror_conflict(const std::vector<const Period*>& periods, const std::string& why) {
    if (m_conflict) return;
    m_conflict = true;
    m_conflict_key.clear();
    for (const Period* p : periods) {
        logger("memo")->debug("conflict at {} fs in the mirrored simulation of {}: {}",
                              sc_core::sc_time_stamp().value(), p->key, why);
        m_conflict_key += (m_conflict_key.empty() ? "" : "\t") + ("mirror|" + p->key);
    }
    sc_core::sc_stop();
}

void CollectiveEngine::conflict(const Period& p, const std::string& why) {
    if (m_conflict) return;
    logger("memo")->debug("conflict at {} fs in the replay of {}: {}", sc_core::sc_time_stamp().value(), p.key, why);
    m_conflict = true;
    m_conflict_key = p.key;
    sc_core::sc_stop();
}

std::string CollectiveEngine::export_memo() const {
    nlohmann::json all = nlohmann::json::object();
    for (const auto& [key, r] : m_memo) {
        nlohmann::json events = nlohmann::json::array(), links = nlohmann::json::array(),
                       chips = nlohmann::json::array();
        for (const Event& e : r.events) {
            events.push_back({e.start, e.rel_fs, e.key, e.item, e.count, e.foreign});
            for (const Event::LagRun& l : e.lags)  // where any
                events.back().push_back({l.first, l.count, l.lag.dma_fs, l.lag.memory_fs});
        }
        for (const auto& d : r.link_stats) links.push_back({d.bytes, d.packets, d.busy_fs});
        for (const auto& s : r.chip_stats) {
            const hw::EndpointStats& d = s.endpoint;
            chips.push_back({d.messages_sent, d.bytes_sent, d.bytes_received, d.bytes_reduced, d.packets_sent,
                             d.dma_busy_fs, s.memory.read_bytes, s.memory.write_bytes, s.memory.requests,
                             s.memory.busy_fs, s.fabric.bytes, s.fabric.transfers, s.fabric.busy_fs, d.kernel_lag_fs,
                             s.memory.kernel_lag_fs});
        }
        all[key] = {{"events", events},    {"links", r.links},
                    {"chips", r.chips},    {"first", {r.first_links, r.first_chips}},
                    {"link_stats", links}, {"chip_stats", chips}};
    }
    return all.dump();
}

void CollectiveEngine::import_memo(const std::string& text) {
    const auto all = nlohmann::json::parse(text);
    for (const auto& [key, j] : all.items()) {
        Record r;
        for (const auto& e : j.at("events")) {
            r.events.push_back({e.at(0).get<bool>(),
                                e.at(1).get<std::uint64_t>(),
                                e.at(2).get<std::string>(),
                                e.at(3).get<std::size_t>(),
                                e.at(4).get<std::size_t>(),
                                e.at(5).get<bool>(),
                                {}});
            for (std::size_t i = 6; i < e.size(); ++i) {
                const auto& l = e.at(i);
                const auto u = [&](std::size_t k) { return l.at(k).get<std::uint64_t>(); };
                r.events.back().lags.push_back({u(0), u(1), {u(2), u(3)}});
            }
        }
        r.links = j.at("links").get<std::vector<std::pair<int, std::size_t>>>();
        r.chips = j.at("chips").get<std::vector<int>>();
        r.first_links = j.at("first").at(0).get<std::size_t>();
        r.first_chips = j.at("first").at(1).get<std::size_t>();
        for (const auto& l : j.at("link_stats")) {
            r.link_stats.push_back(
                {l.at(0).get<std::uint64_t>(), l.at(1).get<std::uint64_t>(), l.at(2).get<std::uint64_t>()});
        }
        for (const auto& e : j.at("chip_stats")) {
            const auto u = [&](std::size_t i) { return e.at(i).get<std::uint64_t>(); };
            hw::ChipStats d;
            d.endpoint = {u(0), u(1), u(2), u(3), u(4), u(5), u(13)};
            d.memory = {u(6), u(7), u(8), u(9), u(14)};
            d.fabric = {u(10), u(11), u(12)};
            r.chip_stats.push_back(d);
        }
        m_memo.emplace(key, std::move(r));
    }
}

}  // namespace trnsim::runtime
