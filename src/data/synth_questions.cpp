// MMR-style implicit questions about a synthetic scene (see m2sa/data/synth.h).
#include <ATen/ATen.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "m2sa/data/synth.h"
#include "m2sa/data/templates.h"
#include "synth_catalog.h"

namespace m2sa::data {

namespace {

using detail::CategorySpec;

const CategorySpec& spec_of(const std::string& category) {
  for (const auto& c : detail::catalog())
    if (c.name == category) return c;
  fail("synth: unknown category ", category);
}

std::string capitalize(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

std::string replace_x(const std::string& lead, const std::string& x) {
  const std::size_t p = lead.find("{X}");
  return lead.substr(0, p) + x + lead.substr(p + 3);
}

// A target phrase with its {seg}: "the house {seg}" or "house_1 {seg} and house_2 {seg}".
std::string object_phrase(const SynthScene& s, const std::vector<int>& objs) {
  std::vector<std::string> items;
  for (int o : objs) {
    const SynthObject& obj = s.objects[static_cast<std::size_t>(o)];
    items.push_back((objs.size() == 1 && obj.instance_name == obj.category ? "the " + obj.category : obj.instance_name) +
                    " {seg}");
  }
  return join_and(items);
}

std::string part_owner(const SynthObject& obj) {
  return obj.instance_name == obj.category ? "the " + obj.category + "'s" : obj.instance_name + "'s";
}

struct Candidate {
  SynthKind kind;
  std::function<SynthQuestion(Rng&)> build;
};

}  // namespace

std::vector<SynthQuestion> make_questions(const SynthScene& s, const std::vector<SynthKind>& kinds, int count, Rng& rng) {
  // Askable objects: every category present (all its instances); askable parts: enough visible pixels.
  std::vector<std::string> categories;
  std::map<std::string, std::vector<int>> instances;  // left to right
  for (std::size_t i = 0; i < s.objects.size(); ++i) {
    const SynthObject& o = s.objects[i];
    if (!instances.count(o.category)) categories.push_back(o.category);
    instances[o.category].push_back(static_cast<int>(i));
  }
  for (auto& [c, v] : instances)
    std::sort(v.begin(), v.end(), [&](int a, int b) { return s.objects[a].instance_name < s.objects[b].instance_name; });
  std::vector<std::pair<int, int>> parts;  // (object, part)
  for (std::size_t i = 0; i < s.objects.size(); ++i)
    for (std::size_t p = 0; p < s.objects[i].parts.size(); ++p) {
      const SynthPart& part = s.objects[i].parts[p];
      // Only parts that stay reasonably visible are asked about: at least 0.4% of the image (and 24 pixels) and
      // 40% of their unoccluded area. This keeps the targets learnable for a small model.
      const int64_t visible = part.visible_area;
      const int64_t min_pixels = std::max<int64_t>(24, s.height * s.width / 250);
      if (visible >= min_pixels && visible * 5 >= part.full_area * 2)
        parts.emplace_back(static_cast<int>(i), static_cast<int>(p));
    }

  auto allowed = [&](SynthKind k) { return std::find(kinds.begin(), kinds.end(), k) != kinds.end(); };
  std::map<SynthKind, std::vector<Candidate>> pool;

  if (allowed(SynthKind::kObject)) {
    for (const std::string& c : categories) {
      pool[SynthKind::kObject].push_back({SynthKind::kObject, [&, c](Rng& r) {
        const CategorySpec& spec = spec_of(c);
        SynthQuestion q;
        q.kind = SynthKind::kObject;
        q.question = choice(r, spec.questions);
        q.text_answer = capitalize(replace_x(spec.lead, object_phrase(s, instances[c]))) + ".";
        for (int o : instances[c]) q.targets.push_back({o, -1});
        return q;
      }});
    }
    for (std::size_t a = 0; a < categories.size(); ++a)
      for (std::size_t b = 0; b < categories.size(); ++b) {
        if (a == b) continue;
        const std::string ca = categories[a], cb = categories[b];
        pool[SynthKind::kObject].push_back({SynthKind::kObject, [&, ca, cb](Rng&) {
          const CategorySpec& sa = spec_of(ca);
          const CategorySpec& sb = spec_of(cb);
          SynthQuestion q;
          q.kind = SynthKind::kObject;
          q.question = "What " + sa.clause + ", and what " + sb.clause + "?";
          q.text_answer = capitalize(replace_x(sa.lead, object_phrase(s, instances[ca]))) + ", and " +
                          replace_x(sb.lead, object_phrase(s, instances[cb])) + ".";
          for (int o : instances[ca]) q.targets.push_back({o, -1});
          for (int o : instances[cb]) q.targets.push_back({o, -1});
          return q;
        }});
      }
  }
  if (allowed(SynthKind::kPart)) {
    for (auto [o, p] : parts) {
      pool[SynthKind::kPart].push_back({SynthKind::kPart, [&, o = o, p = p](Rng& r) {
        const SynthObject& obj = s.objects[static_cast<std::size_t>(o)];
        const auto& ps = spec_of(obj.category).parts[static_cast<std::size_t>(p)];
        SynthQuestion q;
        q.kind = SynthKind::kPart;
        const std::string which = ps.plural ? "Which parts of " : "Which part of ";
        const std::string be = ps.plural ? " are " : " is ";
        q.question = which + obj.reference + be + (coin(r) ? "meant " : "there ") + ps.to_phrase + "?";
        const std::string target = part_owner(obj) + " " + ps.name + " {seg}";
        if (coin(r))
          q.text_answer = std::string(ps.plural ? "Those would be " : "That would be ") + target + ", which " + ps.does_phrase + ".";
        else
          q.text_answer = "You should look at " + target + (ps.plural ? ": they " : ": it ") + ps.does_phrase + ".";
        q.targets.push_back({o, p});
        return q;
      }});
    }
    for (std::size_t a = 0; a < parts.size(); ++a)
      for (std::size_t b = 0; b < parts.size(); ++b) {
        if (a == b || parts[a].first != parts[b].first) continue;
        const int o = parts[a].first, pa = parts[a].second, pb = parts[b].second;
        pool[SynthKind::kPart].push_back({SynthKind::kPart, [&, o, pa, pb](Rng&) {
          const SynthObject& obj = s.objects[static_cast<std::size_t>(o)];
          const auto& spec = spec_of(obj.category);
          const auto& A = spec.parts[static_cast<std::size_t>(pa)];
          const auto& B = spec.parts[static_cast<std::size_t>(pb)];
          SynthQuestion q;
          q.kind = SynthKind::kPart;
          q.question = "Which parts of " + obj.reference + " are meant " + A.to_phrase + " and " + B.to_phrase + "?";
          q.text_answer = "Those are " + part_owner(obj) + " " + A.name + " {seg}, which " + A.does_phrase + ", and its " +
                          B.name + " {seg}, which " + B.does_phrase + ".";
          q.targets = {{o, pa}, {o, pb}};
          return q;
        }});
      }
  }
  if (allowed(SynthKind::kMixed)) {
    for (const std::string& c : categories)
      for (auto [o, p] : parts) {
        pool[SynthKind::kMixed].push_back({SynthKind::kMixed, [&, c, o = o, p = p](Rng&) {
          const CategorySpec& cs = spec_of(c);
          const SynthObject& obj = s.objects[static_cast<std::size_t>(o)];
          const auto& ps = spec_of(obj.category).parts[static_cast<std::size_t>(p)];
          const bool same = instances[c].size() == 1 && instances[c][0] == o;
          SynthQuestion q;
          q.kind = SynthKind::kMixed;
          const std::string which = ps.plural ? "which parts" : "which part";
          const std::string be = ps.plural ? " are " : " is ";
          q.question = "Which object " + cs.clause + ", and " + which + (same ? " of it" : " of " + obj.reference) + be +
                       "meant " + ps.to_phrase + "?";
          const std::string owner = same ? "its" : part_owner(obj);
          q.text_answer = capitalize(replace_x(cs.lead, object_phrase(s, instances[c]))) + ", and " + owner + " " + ps.name +
                          " {seg} " + ps.does_phrase + ".";
          for (int t : instances[c]) q.targets.push_back({t, -1});
          q.targets.push_back({o, p});
          return q;
        }});
      }
  }

  // Draw: a kind uniformly among those with candidates left, then a candidate of that kind.
  std::vector<SynthQuestion> out;
  std::set<std::string> seen;
  while (static_cast<int>(out.size()) < count) {
    std::vector<SynthKind> live;
    for (SynthKind k : kinds)
      if (!pool[k].empty() && std::find(live.begin(), live.end(), k) == live.end()) live.push_back(k);
    if (live.empty()) break;
    auto& cands = pool[choice(rng, live)];
    const std::size_t i = uniform_int(rng, cands.size());
    SynthQuestion q = cands[i].build(rng);
    cands.erase(cands.begin() + static_cast<std::ptrdiff_t>(i));
    if (!seen.insert(q.question).second) continue;
    out.push_back(std::move(q));
  }
  return out;
}

}  // namespace m2sa::data
