#include "support/xml.h"

#include <algorithm>
#include <cctype>
#include <vector>

namespace trnsim::testing {

bool well_formed_xml(const std::string& xml, std::string& why) {
    std::vector<std::string> stack;
    std::size_t i = 0;
    if (xml.rfind("<?xml ", 0) == 0) i = xml.find("?>") + 2;
    bool root_seen = false;
    while (i < xml.size()) {
        if (xml[i] == '&') {
            const auto semi = xml.find(';', i);
            const std::string ent = xml.substr(i, semi == std::string::npos ? 0 : semi - i + 1);
            if (ent != "&amp;" && ent != "&lt;" && ent != "&gt;" && ent != "&quot;" && ent != "&apos;")
                return why = "bad entity at " + std::to_string(i), false;
            i = semi + 1;
            continue;
        }
        if (xml[i] != '<') {
            if (stack.empty() && !std::isspace(static_cast<unsigned char>(xml[i])))
                return why = "text outside the root", false;
            ++i;
            continue;
        }
        const auto end = xml.find('>', i);
        if (end == std::string::npos) return why = "unterminated tag", false;
        std::string tag = xml.substr(i + 1, end - i - 1);
        i = end + 1;
        if (tag.empty()) return why = "empty tag", false;
        if (tag[0] == '/') {
            if (stack.empty() || stack.back() != tag.substr(1))
                return why = "mismatched </" + tag.substr(1) + ">", false;
            stack.pop_back();
            continue;
        }
        const bool self_closing = tag.back() == '/';
        if (self_closing) tag.pop_back();
        const std::string name = tag.substr(0, tag.find_first_of(" \t\n"));
        if (stack.empty() && root_seen) return why = "two root elements", false;
        root_seen = true;
        // Attributes: name="value" pairs, no '<' inside.
        std::size_t quotes = static_cast<std::size_t>(std::count(tag.begin(), tag.end(), '"'));
        if (quotes % 2 != 0 || tag.find('<') != std::string::npos) return why = "bad attributes in <" + name, false;
        if (!self_closing) stack.push_back(name);
    }
    if (!stack.empty()) return why = "unclosed <" + stack.back() + ">", false;
    return root_seen || (why = "no root element", false);
}

}  // namespace trnsim::testing
