#include <cstdio>
#include <cstdlib>
#include <exception>

#include <fmt/format.h>
#include <systemc>

#include "commands.h"
#include "trnsim/core/error.h"

// libsystemc's own main() calls sc_main(); trnsim has its own main and uses SystemC as a library.
extern "C" int sc_main(int, char**) {
    return 0;
}

int main(int argc, char** argv) {
    CLI::App app{
        "trnsim: a cycle-accurate simulator of Trainium-style accelerators.\n"
        "Without a subcommand it runs the default simulation: one training step of Llama 3 8B on trn2.48xlarge\n"
        "(trnsim run with its defaults)."};
    app.require_subcommand(0, 1);
    app.set_version_flag("--version", "trnsim 0.1.0");
    std::vector<std::function<int()>> runners;
    std::vector<CLI::App*> subs;
    runners.push_back(trnsim::cli::add_kernel_command(app));
    runners.push_back(trnsim::cli::add_mem_command(app));
    runners.push_back(trnsim::cli::add_collective_command(app));
    runners.push_back(trnsim::cli::add_run_command(app));
    runners.push_back(trnsim::cli::add_sweep_command(app));
    runners.push_back(trnsim::cli::add_merge_command(app));
    runners.push_back(trnsim::cli::add_compare_command(app));
    runners.push_back(trnsim::cli::add_presets_command(app));
    runners.push_back(trnsim::cli::add_describe_command(app));
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "trnsim: error: %s\n", e.what());
        return 2;
    }
    try {
        const auto chosen = app.get_subcommands();
        if (chosen.empty()) return trnsim::cli::run_default();
        const auto all = app.get_subcommands({});
        for (std::size_t i = 0; i < all.size(); ++i) {
            if (all[i] == chosen.front()) return runners[i]();
        }
        return 2;
    } catch (const trnsim::StoppedSimulation& e) {
        std::fprintf(stderr, "trnsim: error: %s\n", e.what());
        std::fflush(nullptr);
        std::_Exit(2);  // its suspended SystemC threads still hold what they allocated: nothing to tear down
    } catch (const trnsim::UserError& e) {
        std::fprintf(stderr, "trnsim: error: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "trnsim: internal error: %s\n", e.what());
        return 3;
    } catch (...) {
        std::fprintf(stderr, "trnsim: internal error: unknown exception\n");
        return 3;
    }
}
