#include "trnsim/runtime/collective_engine.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "trnsim/core/process.h"

namespace trnsim::runtime {

CollectiveEngine::CollectiveEngine(hw::Cluster& cluster) : m_cluster(cluster) {
    const hw::ClusterSpec& spec = cluster.spec();
    const auto order = cluster.topology().ring_order();
    for (int n = 0; n < spec.nodes; ++n)
        for (int local : order)
            for (int k = 0; k < spec.ranks_per_chip; ++k) m_rank_chip.push_back(n * spec.chips_per_node() + local);
}

std::vector<int> CollectiveEngine::first_ranks(int n) const {
    std::vector<int> group;
    for (int r = 0; r < n; ++r) group.push_back(r);
    return group;
}

RankLayout CollectiveEngine::layout(const std::vector<int>& group) const {
    const hw::ClusterSpec& spec = m_cluster.spec();
    const hw::Topology& topo = m_cluster.topology();
    RankLayout l;
    l.ranks = static_cast<int>(group.size());
    l.ranks_per_chip = spec.ranks_per_chip;
    l.nodes = spec.nodes;
    l.chips_per_node = spec.chips_per_node();
    l.total_ranks = ranks();
    l.topology = spec.topology.text;
    l.torus_dims = topo.torus_dims();
    std::vector<int> per_node(static_cast<std::size_t>(spec.nodes), 0);
    for (const int rank : group) {
        const int chip = chip_of_rank(rank);
        const int node = chip / spec.chips_per_node();
        l.chip_of_rank.push_back(chip);
        l.node_of_rank.push_back(node);
        l.position_in_node.push_back(per_node[static_cast<std::size_t>(node)]++);
        l.coords_of_rank.push_back(topo.coords(chip % spec.chips_per_node()));
    }
    return l;
}

void CollectiveEngine::restart() {
    m_next_id = 0;
    for (int c = 0; c < m_cluster.chips(); ++c) m_cluster.endpoint(c).restart_assignment();
}

void CollectiveEngine::enable_memo() {
    if (m_memo_on) return;
    m_memo_on = true;
    sc_core::sc_spawn_options opts;
    opts.spawn_method();
    opts.set_sensitivity(&m_close_event);
    opts.dont_initialize();
    sc_core::sc_spawn([this] { close_pending(); }, "collective_memo", &opts);
}

void CollectiveEngine::start(const Schedule& schedule, const RankLayout& layout, DType dtype, Done on_done) {
    std::vector<BatchItem> items(1);
    items[0] = {&schedule, &layout, dtype, std::move(on_done)};
    start_batch(std::move(items));
}

void CollectiveEngine::start_batch(std::vector<BatchItem> items, const std::string& context) {
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    // A collective without transfers (a group of one) is done at once and is no traffic.
    std::vector<BatchItem> traffic;
    for (auto& b : items) {
        if (!b.schedule->transfers.empty())
            traffic.push_back(std::move(b));
        else if (b.on_done)
            b.on_done(now);
    }
    if (traffic.empty() || m_conflict) return;
    if (m_pending.open) {  // joins what starts at this time on the idle network
        for (auto& b : traffic) m_pending.items.push_back(std::move(b));
        m_pending.context += "|" + context;
        m_pending.added_delta = sc_core::sc_delta_count();
        return;
    }
    if (m_replay.record == nullptr && !m_rec.on && m_active == 0 && network_idle(now)) {
        // Traffic on an idle network: DMA rings are assigned afresh, so the same traffic evolves the same
        // way whenever it starts (which the memo relies on).
        restart();
        if (m_memo_on) {
            m_pending.open = true;
            m_pending.items = std::move(traffic);
            m_pending.context = context;
            m_pending.added_delta = sc_core::sc_delta_count();
            m_close_event.notify(sc_core::SC_ZERO_TIME);
            return;
        }
    }
    std::vector<Done*> done;
    for (auto& b : traffic) done.push_back(&b.on_done);
    if (!starts(batch_key(traffic), done)) return;
    for (const BatchItem& item : traffic) launch(item);
}

// Everything started at this time on the idle network begins one busy period: closed once a whole delta
// cycle has passed without another start, then replayed, or simulated and recorded.
void CollectiveEngine::close_pending() {
    if (!m_pending.open) return;
    if (sc_core::sc_delta_count() <= m_pending.added_delta + 1) {
        m_close_event.notify(sc_core::SC_ZERO_TIME);
        return;
    }
    m_pending.open = false;
    std::vector<BatchItem> items = std::move(m_pending.items);
    m_pending.items.clear();
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    std::string key = batch_key(items) + "@" + m_pending.context;
    const auto it = m_memo.find(key);
    if (it != m_memo.end()) {
        begin_replay(it->second, now);
        for (auto& b : items) m_replay.on_done.push_back(std::move(b.on_done));
        arm_replay();
        return;
    }
    begin_record(now);
    m_rec.key = std::move(key);
    std::vector<Done*> done;
    for (auto& b : items) done.push_back(&b.on_done);
    starts(batch_key(items), done);
    for (const BatchItem& item : items) launch(item);
}

void CollectiveEngine::flush_pending() {
    if (!m_pending.open) return;
    m_pending.open = false;
    std::vector<BatchItem> items = std::move(m_pending.items);
    m_pending.items.clear();
    for (const BatchItem& item : items) launch(item);
}

CollectiveEngine::Job* CollectiveEngine::launch(const BatchItem& item) {
    auto job = std::make_unique<Job>();
    job->schedule = item.schedule;
    job->layout = item.layout;
    job->elem_bytes = dtype_bytes(item.dtype);
    const auto& tr = item.schedule->transfers;
    if (tr.empty()) {
        if (item.on_done) item.on_done(sc_core::sc_time_stamp().value());
        return nullptr;
    }
    ++m_active;
    job->on_done = [this, done = item.on_done](std::uint64_t fs) {
        --m_active;
        if (done) done(fs);
    };
    job->messages.resize(tr.size());
    job->waiting.resize(tr.size());
    job->dependents.resize(tr.size());
    for (std::size_t i = 0; i < tr.size(); ++i) {
        job->waiting[i] = static_cast<int>(tr[i].deps.size());
        for (int d : tr[i].deps) job->dependents[static_cast<std::size_t>(d)].push_back(static_cast<int>(i));
    }
    Job* j = job.get();
    m_jobs.push_back(std::move(job));
    for (std::size_t i = 0; i < tr.size(); ++i)
        if (j->waiting[i] == 0) submit(j, i);
    return j;
}

void CollectiveEngine::submit(Job* job, std::size_t i) {
    const Transfer& t = job->schedule->transfers[i];
    const RankLayout& l = *job->layout;
    hw::Message& m = job->messages[i];
    m.id = m_next_id++;
    m.src_chip = l.chip_of_rank[static_cast<std::size_t>(t.src)];
    m.dst_chip = l.chip_of_rank[static_cast<std::size_t>(t.dst)];
    m.bytes = t.bytes;
    m.reduce = t.reduce;
    m.elem_bytes = job->elem_bytes;
    m.route = &m_cluster.topology().route(m.src_chip, m.dst_chip);
    m.on_done = [this, job, i](std::uint64_t fs) {
        job->last_fs = std::max(job->last_fs, fs);
        for (int d : job->dependents[i])
            if (--job->waiting[static_cast<std::size_t>(d)] == 0) submit(job, static_cast<std::size_t>(d));
        if (++job->done == job->messages.size() && job->on_done) job->on_done(job->last_fs);
    };
    m_cluster.endpoint(m.src_chip).send(&m);
}

void CollectiveEngine::send(int src_rank, int dst_rank, std::uint64_t bytes, Done on_done) {
    if (m_conflict) return;
    flush_pending();  // a busy period starts with collectives
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    if (m_replay.record == nullptr && !m_rec.on && m_active == 0 && network_idle(now)) restart();
    const int src = chip_of_rank(src_rank), dst = chip_of_rank(dst_rank);
    if (!starts(fmt::format("p2p:{}>{}:{}", src, dst, bytes), {&on_done})) return;
    ++m_active;
    hw::Message& m = m_p2p.emplace_back();
    m.id = m_next_id++;
    m.src_chip = src;
    m.dst_chip = dst;
    m.bytes = bytes;
    m.reduce = false;
    m.route = &m_cluster.topology().route(m.src_chip, m.dst_chip);
    m.on_done = [this, done = std::move(on_done)](std::uint64_t fs) {
        --m_active;
        if (done) done(fs);
    };
    m_cluster.endpoint(m.src_chip).send(&m);
}

// ---------------------------------------------------------------------------------------------------
// Memo

bool CollectiveEngine::network_idle(std::uint64_t now) const {
    for (const auto& l : m_cluster.topology().links())
        if (!l.link->idle(now)) return false;
    for (int c = 0; c < m_cluster.chips(); ++c)
        if (!m_cluster.endpoint(c).idle(now)) return false;
    return true;
}

// A batch as the memo tells batches apart: every transfer (chips, bytes, reduction, dependencies) and the
// element size.
std::string CollectiveEngine::batch_key(const std::vector<BatchItem>& items) {
    std::string key;
    for (const BatchItem& b : items) {
        auto& fp = m_fingerprints[{b.schedule, b.layout}];
        if (fp.empty()) {
            std::string text;
            for (const Transfer& t : b.schedule->transfers) {
                text += fmt::format("{}>{}:{}:{}:", b.layout->chip_of_rank[static_cast<std::size_t>(t.src)],
                                    b.layout->chip_of_rank[static_cast<std::size_t>(t.dst)], t.bytes, t.reduce ? 1 : 0);
                for (int d : t.deps) text += fmt::format("{},", d);
                text += ';';
            }
            fp = stable_hash(text);
        }
        key += fmt::format("{}/{};", fp, dtype_bytes(b.dtype));
    }
    return key;
}

bool CollectiveEngine::starts(const std::string& key, std::vector<Done*> done) {
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    if (m_replay.record != nullptr) {
        const auto& events = m_replay.record->events;
        const Event* e = m_replay.next < events.size() ? &events[m_replay.next] : nullptr;
        if (e == nullptr || !e->start || m_replay.start_fs + e->rel_fs != now || e->key != key ||
            e->count != done.size()) {
            conflict();
            return false;
        }
        ++m_replay.next;
        for (Done* d : done) m_replay.on_done.push_back(std::move(*d));
        arm_replay();
        return false;
    }
    if (m_rec.on) {
        m_rec.record.events.push_back({true, now - m_rec.start_fs, key, m_rec.items, done.size()});
        for (Done* d : done) {
            *d = [this, item = m_rec.items++, cb = std::move(*d)](std::uint64_t fs) {
                record_done(item, fs);
                if (cb) cb(fs);
            };
        }
    }
    return true;
}

void CollectiveEngine::begin_record(std::uint64_t now) {
    m_rec = Recording{};
    m_rec.on = true;
    m_rec.start_fs = now;
    m_rec.first_id = m_next_id;
    for (const auto& l : m_cluster.topology().links()) m_rec.links0.push_back(l.link->stats());
    for (int c = 0; c < m_cluster.chips(); ++c) m_rec.endpoints0.push_back(m_cluster.endpoint(c).stats());
}

void CollectiveEngine::record_done(std::size_t item, std::uint64_t fs) {
    if (!m_rec.on) return;
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    m_rec.record.events.push_back({false, fs - m_rec.start_fs, {}, item, 0});
    if (m_active == 0 && network_idle(now)) finish_record();
}

// The network is idle again: the busy period's record is complete.
void CollectiveEngine::finish_record() {
    m_rec.on = false;
    Record& r = m_rec.record;
    r.messages = m_next_id - m_rec.first_id;
    const auto& links = m_cluster.topology().links();
    for (std::size_t i = 0; i < links.size(); ++i) {
        const hw::LinkStats& a = m_rec.links0[i];
        const hw::LinkStats& b = links[i].link->stats();
        if (b.packets == a.packets && b.busy_fs == a.busy_fs) continue;
        r.links.push_back({i, {b.bytes - a.bytes, b.packets - a.packets, b.busy_fs - a.busy_fs}});
    }
    for (int c = 0; c < m_cluster.chips(); ++c) {
        const hw::EndpointStats& a = m_rec.endpoints0[static_cast<std::size_t>(c)];
        const hw::EndpointStats& b = m_cluster.endpoint(c).stats();
        r.next_ring.push_back(m_cluster.endpoint(c).next_ring());
        if (b.messages_sent == a.messages_sent && b.bytes_received == a.bytes_received) continue;
        r.endpoints.push_back(
            {c,
             {b.messages_sent - a.messages_sent, b.bytes_sent - a.bytes_sent, b.bytes_received - a.bytes_received,
              b.bytes_reduced - a.bytes_reduced, b.packets_sent - a.packets_sent, b.dma_busy_fs - a.dma_busy_fs,
              b.vector_busy_fs - a.vector_busy_fs}});
    }
    m_memo.emplace(std::move(m_rec.key), std::move(r));
    ++m_memo_stats.recorded;
}

void CollectiveEngine::begin_replay(const Record& r, std::uint64_t now) {
    ++m_memo_stats.replayed;
    m_next_id += r.messages;
    for (const auto& [i, d] : r.links) m_cluster.topology().mutable_link(i).add_stats(d);
    for (const auto& [c, d] : r.endpoints) m_cluster.endpoint(c).add_stats(d);
    for (int c = 0; c < m_cluster.chips(); ++c)
        m_cluster.endpoint(c).set_next_ring(r.next_ring[static_cast<std::size_t>(c)]);
    m_replay.start_fs = now;
    m_replay.record = &r;
    m_replay.next = 1;  // events[0] is this start
    m_replay.on_done.clear();
    if (!m_replay_wake) m_replay_wake = std::make_unique<hw::Wakeup>([this] { deliver_replayed(); });
}

// Wakes for the next completion, or just after the next start is due (it must have come by then).
void CollectiveEngine::arm_replay() {
    if (m_replay.record == nullptr) return;
    const Event& e = m_replay.record->events[m_replay.next];
    const std::uint64_t at = m_replay.start_fs + e.rel_fs + (e.start ? 1 : 0);
    m_replay_wake->notify(at - sc_core::sc_time_stamp().value());
}

void CollectiveEngine::deliver_replayed() {
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    while (m_replay.record != nullptr) {
        const auto& events = m_replay.record->events;
        const Event& e = events[m_replay.next];
        const std::uint64_t at = m_replay.start_fs + e.rel_fs;
        if (e.start) {
            if (at < now)
                conflict();  // it did not come
            else
                arm_replay();
            return;
        }
        if (at > now) {
            arm_replay();
            return;
        }
        // The last completion ends the replay first: what its callback starts begins a new busy period.
        if (++m_replay.next == events.size()) m_replay.record = nullptr;
        Done cb = std::move(m_replay.on_done[e.item]);
        if (cb) cb(at);
    }
}

std::string CollectiveEngine::export_memo() const {
    nlohmann::json all = nlohmann::json::object();
    for (const auto& [key, r] : m_memo) {
        nlohmann::json events = nlohmann::json::array(), links = nlohmann::json::array(),
                       endpoints = nlohmann::json::array();
        for (const Event& e : r.events) events.push_back({e.start, e.rel_fs, e.key, e.item, e.count});
        for (const auto& [i, d] : r.links) links.push_back({i, d.bytes, d.packets, d.busy_fs});
        for (const auto& [c, d] : r.endpoints) {
            endpoints.push_back({c, d.messages_sent, d.bytes_sent, d.bytes_received, d.bytes_reduced, d.packets_sent,
                                 d.dma_busy_fs, d.vector_busy_fs});
        }
        all[key] = {{"events", events},
                    {"messages", r.messages},
                    {"links", links},
                    {"endpoints", endpoints},
                    {"next_ring", r.next_ring}};
    }
    return all.dump();
}

void CollectiveEngine::import_memo(const std::string& text) {
    const auto all = nlohmann::json::parse(text);
    for (const auto& [key, j] : all.items()) {
        Record r;
        for (const auto& e : j.at("events")) {
            r.events.push_back({e.at(0).get<bool>(), e.at(1).get<std::uint64_t>(), e.at(2).get<std::string>(),
                                e.at(3).get<std::size_t>(), e.at(4).get<std::size_t>()});
        }
        r.messages = j.at("messages").get<std::uint64_t>();
        for (const auto& l : j.at("links")) {
            r.links.push_back(
                {l.at(0).get<std::size_t>(),
                 {l.at(1).get<std::uint64_t>(), l.at(2).get<std::uint64_t>(), l.at(3).get<std::uint64_t>()}});
        }
        for (const auto& e : j.at("endpoints")) {
            hw::EndpointStats d;
            d.messages_sent = e.at(1).get<std::uint64_t>();
            d.bytes_sent = e.at(2).get<std::uint64_t>();
            d.bytes_received = e.at(3).get<std::uint64_t>();
            d.bytes_reduced = e.at(4).get<std::uint64_t>();
            d.packets_sent = e.at(5).get<std::uint64_t>();
            d.dma_busy_fs = e.at(6).get<std::uint64_t>();
            d.vector_busy_fs = e.at(7).get<std::uint64_t>();
            r.endpoints.push_back({e.at(0).get<int>(), d});
        }
        r.next_ring = j.at("next_ring").get<std::vector<int>>();
        m_memo.emplace(key, std::move(r));
    }
}

void CollectiveEngine::conflict() {
    if (m_conflict) return;
    m_conflict = true;
    m_replay.record = nullptr;
    sc_core::sc_stop();
}

}  // namespace trnsim::runtime
