#include "trnsim/core/sim_context.h"

#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#include <pthread.h>
#include <sanitizer/common_interface_defs.h>
#endif

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <systemc>

#include "trnsim/core/error.h"

namespace trnsim {

namespace {

void report_to_spdlog(const sc_core::sc_report& report, const sc_core::sc_actions& actions) {
    auto log = logger("systemc");
    const std::string text = std::string(report.get_msg_type()) + ": " + report.get_msg();
    switch (report.get_severity()) {
        case sc_core::SC_INFO: log->info(text); break;
        case sc_core::SC_WARNING: log->warn(text); break;
        default: log->error(text); break;
    }
    if (actions & sc_core::SC_THROW) throw report;
    if (actions & sc_core::SC_ABORT) std::abort();
}

std::string& stop_message() {
    static std::string message;
    return message;
}

}  // namespace

std::shared_ptr<spdlog::logger> logger(const std::string& component) {
    if (auto existing = spdlog::get(component)) return existing;
    static auto sink = std::make_shared<spdlog::sinks::stderr_sink_st>();
    auto log = std::make_shared<spdlog::logger>(component, sink);
    const char* level = std::getenv("TRNSIM_LOG");
    log->set_level(level ? spdlog::level::from_str(level) : spdlog::level::warn);
    log->set_pattern("[%l] %n: %v");
    spdlog::register_logger(log);
    return log;
}

void run_simulation() {
    sc_core::sc_start();
#if defined(__SANITIZE_ADDRESS__)
    pthread_attr_t attr;
    pthread_getattr_np(pthread_self(), &attr);
    void* bottom = nullptr;
    std::size_t size = 0;
    pthread_attr_getstack(&attr, &bottom, &size);
    pthread_attr_destroy(&attr);
    void* fake_stack = nullptr;
    __sanitizer_start_switch_fiber(&fake_stack, bottom, size);
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
    std::string message;
    message.swap(stop_message());
    if (!message.empty()) throw StoppedSimulation(message);
}

void stop_simulation(const std::string& message) {
    if (!stop_message().empty()) return;  // the first error is the one to report
    stop_message() = message;
    sc_core::sc_stop();
}

void init_systemc() {
    static bool done = false;
    if (done) return;
    done = true;
    setenv("SC_COPYRIGHT_MESSAGE", "DISABLE", 1);
    sc_core::sc_set_time_resolution(1, sc_core::SC_FS);
    sc_core::sc_report_handler::set_handler(report_to_spdlog);
    // An error in a model is a bug or a bad input we failed to catch earlier: throw, don't abort.
    sc_core::sc_report_handler::set_actions(sc_core::SC_ERROR, sc_core::SC_DISPLAY | sc_core::SC_THROW);
}

}  // namespace trnsim
