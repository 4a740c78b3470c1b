// The link and switch models against their closed forms: serialization at the link bandwidth, per-hop
// latency, cut-through pipelining over several hops, round-robin sharing between flows.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <vector>

#include "support/isolated.h"
#include "trnsim/core/sim_context.h"
#include "trnsim/hw/link.h"
#include "trnsim/hw/network_switch.h"

using namespace trnsim;
using nlohmann::json;

namespace {

// A message: `packets` packets of `bytes` each, all available at time `at_fs`, on `route`.
struct Flow {
    std::uint64_t id;
    int packets;
    std::uint64_t bytes;
    std::uint64_t at_fs;
    hw::Route route;
    std::vector<std::int32_t> slots;
    std::vector<hw::Packet> storage;
};

// Records when each packet's last byte reaches the end of its route.
struct Recorder : hw::PacketSink {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> arrivals;  // (flow, tail fs)
    void accept(hw::Packet* p) override { arrivals.emplace_back(static_cast<Flow*>(p->message)->id, p->tail_fs); }
};

void inject(Flow& f) {
    f.slots.assign(f.route.size(), -1);
    f.storage.resize(static_cast<std::size_t>(f.packets));
    for (auto& p : f.storage) {
        p.message = &f;  // the recorder's way back to the flow
        p.bytes = static_cast<std::uint32_t>(f.bytes);
        p.head_fs = p.tail_fs = f.at_fs;
        p.route = &f.route;
        p.hop = 0;
        p.flow_slots = f.slots.data();
        f.route[0]->accept(&p);
    }
}

// Last arrival time of each flow, in seconds.
json last_arrivals(const Recorder& r) {
    json j = json::object();
    for (const auto& [flow, t] : r.arrivals) {
        const std::string k = std::to_string(flow);
        const double s = static_cast<double>(t) * 1e-15;
        if (!j.contains(k) || j[k].get<double>() < s) j[k] = s;
    }
    return j;
}

const double k_bw = 100e9;    // B/s
const double k_lat = 500e-9;  // s
const std::uint64_t k_packet = 64 * 1024;

}  // namespace

TEST_CASE("one packet arrives after its serialization plus the hop latency", "[link]") {
    const json j = json::parse(testing::run_isolated([] {
        init_systemc();
        hw::Link link("link", {Bandwidth{k_bw}, Duration{k_lat}});
        Recorder sink;
        Flow f{1, 1, k_packet, 0, {&link, &sink}, {}, {}};
        inject(f);
        run_simulation();
        json out = last_arrivals(sink);
        out["bytes"] = link.stats().bytes;
        out["busy_s"] = static_cast<double>(link.stats().busy_fs) * 1e-15;
        return out.dump();
    }));
    CHECK(j["1"].get<double>() == Approx(k_lat + k_packet / k_bw).epsilon(1e-9));
    CHECK(j["bytes"].get<std::uint64_t>() == k_packet);
    CHECK(j["busy_s"].get<double>() == Approx(k_packet / k_bw).epsilon(1e-9));
}

TEST_CASE("a message over three hops is pipelined: 3 latencies plus its bytes once at the link bandwidth", "[link]") {
    const json j = json::parse(testing::run_isolated([] {
        init_systemc();
        hw::Link a("a", {Bandwidth{k_bw}, Duration{k_lat}});
        hw::Link b("b", {Bandwidth{k_bw}, Duration{k_lat}});
        hw::Link c("c", {Bandwidth{k_bw}, Duration{k_lat}});
        Recorder sink;
        Flow f{1, 100, k_packet, 0, {&a, &b, &c, &sink}, {}, {}};
        inject(f);
        run_simulation();
        return last_arrivals(sink).dump();
    }));
    // Store-and-forward would add 2 packet times (2.6 us); cut-through at packet granularity does not.
    CHECK(j["1"].get<double>() == Approx(3 * k_lat + 100 * k_packet / k_bw).epsilon(1e-9));
}

TEST_CASE("a slower hop on the route sets the message's rate", "[link]") {
    const json j = json::parse(testing::run_isolated([] {
        init_systemc();
        hw::Link fast("fast", {Bandwidth{k_bw}, Duration{k_lat}});
        hw::Link slow("slow", {Bandwidth{k_bw / 4}, Duration{k_lat}});
        Recorder sink;
        Flow f{1, 50, k_packet, 0, {&fast, &slow, &sink}, {}, {}};
        inject(f);
        run_simulation();
        return last_arrivals(sink).dump();
    }));
    // Cut-through: the slow link starts as soon as the first packet's head arrives (one latency) and,
    // fed faster than it drains, never idles.
    CHECK(j["1"].get<double>() == Approx(2 * k_lat + 50 * k_packet / (k_bw / 4)).epsilon(1e-9));
}

TEST_CASE("two flows on one link share it round-robin, packet by packet", "[link]") {
    const json j = json::parse(testing::run_isolated([] {
        init_systemc();
        hw::Link link("link", {Bandwidth{k_bw}, Duration{k_lat}});
        Recorder sink;
        Flow f1{1, 20, k_packet, 0, {&link, &sink}, {}, {}};
        Flow f2{2, 20, k_packet, 0, {&link, &sink}, {}, {}};
        inject(f1);
        inject(f2);
        run_simulation();
        json out = last_arrivals(sink);
        out["bytes"] = link.stats().bytes;
        // Order of service: flows alternate.
        json order = json::array();
        for (std::size_t i = 0; i < 6; ++i) order.push_back(sink.arrivals[i].first);
        out["order"] = order;
        return out.dump();
    }));
    const double t = k_packet / k_bw;
    CHECK(j["order"] == json::parse("[1,2,1,2,1,2]"));
    CHECK(j["1"].get<double>() == Approx(k_lat + 39 * t).epsilon(1e-9));
    CHECK(j["2"].get<double>() == Approx(k_lat + 40 * t).epsilon(1e-9));
    CHECK(j["bytes"].get<std::uint64_t>() == 40 * k_packet);
}

TEST_CASE("a flow joining later gets every other packet from then on", "[link]") {
    const json j = json::parse(testing::run_isolated([] {
        init_systemc();
        hw::Link link("link", {Bandwidth{k_bw}, Duration{k_lat}});
        Recorder sink;
        const auto t = static_cast<std::uint64_t>(k_packet / k_bw * 1e15);
        Flow f1{1, 20, k_packet, 0, {&link, &sink}, {}, {}};
        Flow f2{2, 5, k_packet, 10 * t, {&link, &sink}, {}, {}};
        inject(f1);
        inject(f2);
        run_simulation();
        return last_arrivals(sink).dump();
    }));
    const double t = k_packet / k_bw;
    // Flow 2 arrives after 10 packets of flow 1; its 5 packets alternate with flow 1's, so it finishes
    // after 10 + 2 x 5 packet times, and the link after 25.
    CHECK(j["2"].get<double>() == Approx(k_lat + 20 * t).epsilon(1e-6));
    CHECK(j["1"].get<double>() == Approx(k_lat + 25 * t).epsilon(1e-6));
}

TEST_CASE("through a switch, flows to one output port contend and flows to different ports do not", "[link]") {
    const json j = json::parse(testing::run_isolated([] {
        init_systemc();
        hw::NetworkSwitch sw("sw", hw::SwitchSpec{3, Bandwidth{k_bw}, Duration{200e-9}});
        hw::Link up0("up0", {Bandwidth{k_bw}, Duration{k_lat}});
        hw::Link up1("up1", {Bandwidth{k_bw}, Duration{k_lat}});
        hw::Link up2("up2", {Bandwidth{k_bw}, Duration{k_lat}});
        Recorder sink;
        // 0 -> 2 and 1 -> 2 share output port 2; 2 -> 0 has port 0 to itself.
        Flow a{1, 10, k_packet, 0, {&up0, &sw.output(2), &sink}, {}, {}};
        Flow b{2, 10, k_packet, 0, {&up1, &sw.output(2), &sink}, {}, {}};
        Flow c{3, 10, k_packet, 0, {&up2, &sw.output(0), &sink}, {}, {}};
        inject(a);
        inject(b);
        inject(c);
        run_simulation();
        return last_arrivals(sink).dump();
    }));
    const double t = k_packet / k_bw;
    CHECK(j["3"].get<double>() == Approx(k_lat + 200e-9 + 10 * t).epsilon(1e-9));
    CHECK(std::max(j["1"].get<double>(), j["2"].get<double>()) == Approx(k_lat + 200e-9 + 20 * t).epsilon(1e-6));
}
