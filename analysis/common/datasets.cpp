#include "analysis/common/datasets.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/common/errors.hpp"
#include "core/common/json_guard.hpp"

namespace mechscope::analysis {

const std::vector<std::string>& ioiTemplates() {
  static const std::vector<std::string> t = {
      "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
      "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to",
      "Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to",
      "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to",
      "Then, [B] and [A] had a long argument, and afterwards [B] said to",
      "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to",
      "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to",
      "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to",
      "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to",
      "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to",
      "After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
      "Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
      "Then, [B] and [A] had a long argument. Afterwards [B] said to",
      "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to",
      "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to",
  };
  return t;
}

const std::vector<std::string>& ioiNames() {
  static const std::vector<std::string> n = {
      "Mary",   "John",    "Tom",     "James",  "Dan",    "Sid",    "Martin", "Amy",    "Paul",   "Kate",
      "Lisa",   "Michael", "Sarah",   "David",  "Anna",   "Peter",  "Laura",  "Mark",   "Emma",   "Chris",
      "Alex",   "Ben",     "Jack",    "Rose",   "Adam",   "Jane",   "George", "Helen",  "Frank",  "Grace",
      "Henry",  "Alice",   "Robert",  "Susan",  "Steve",  "Karen",  "Joe",    "Linda",  "Eric",   "Nancy",
      "Kevin",  "Julia",   "Brian",   "Emily",  "Ryan",   "Jessica", "Sam",   "Claire", "Luke",   "Victoria",
      "Matt",   "Rachel",  "Andrew",  "Diana",  "Tony",   "Maria",  "Jeff",   "Lucy",   "Bill",   "Carl",
  };
  return n;
}

namespace {

const std::vector<std::string> kPlaces = {"store", "garden", "restaurant", "school", "hospital", "office", "house", "station"};
const std::vector<std::string> kIoiObjects = {"ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack"};
const std::vector<std::string> kSurfaces = {"table", "desk", "floor"};
const std::vector<std::string> kStarts = {"there is", "you see", "I see"};
const std::vector<std::string> kCoObjects = {"pencil", "notebook", "pen",  "cup",      "plate",  "jug",    "mug",     "puzzle",  "textbook",
                                             "leash",  "necklace", "bracelet", "bottle", "ball", "envelope", "lighter", "bowl"};
const std::vector<std::string> kColours = {"red", "orange", "yellow", "green", "blue", "purple", "brown", "black"};

bool singleToken(const Tokenizer& tok, const std::string& text) { return tok.encode(text).ids.size() == 1; }

/// A rendered IOI prompt and the byte offsets of its three name slots (each name's first letter).
struct IoiRendered {
  std::string text;
  size_t io = 0, s1 = 0, s2 = 0;
};

/// Fills the template's slots left to right ([A] = IO, first [B] = S1, second [B] = S2), recording
/// where each name lands so the role positions come from the text itself.
IoiRendered renderIoi(const std::string& tpl, const std::string& io, const std::string& s1, const std::string& s2,
                      const std::string& place, const std::string& object) {
  IoiRendered r;
  int bSlots = 0;
  for (size_t i = 0; i < tpl.size();) {
    if (tpl.compare(i, 3, "[A]") == 0) {
      r.io = r.text.size();
      r.text += io;
      i += 3;
    } else if (tpl.compare(i, 3, "[B]") == 0) {
      (bSlots == 0 ? r.s1 : r.s2) = r.text.size();
      r.text += bSlots++ == 0 ? s1 : s2;
      i += 3;
    } else if (tpl.compare(i, 7, "[PLACE]") == 0) {
      r.text += place;
      i += 7;
    } else if (tpl.compare(i, 8, "[OBJECT]") == 0) {
      r.text += object;
      i += 8;
    } else {
      r.text += tpl[i++];
    }
  }
  return r;
}

/// The index of the token of `enc` covering byte `byteOffset` of `text` (encodings count code points).
int64_t datasetTokenAt(const Encoding& enc, const std::string& text, size_t byteOffset) {
  size_t cp = 0;
  for (size_t i = 0; i < byteOffset && i < text.size(); ++i) cp += (static_cast<unsigned char>(text[i]) & 0xC0) != 0x80;
  for (size_t t = 0; t < enc.offsets.size(); ++t)
    if (enc.offsets[t].first <= cp && cp < enc.offsets[t].second) return static_cast<int64_t>(t);
  throw InputError(fmt::format("dataset: no token covers character {} of '{}'", cp, text));
}

/// ABBA: the first two name slots swapped ("Then, [A] and [B] went ... [B] gave ...").
std::string abba(std::string tpl) {
  const size_t b = tpl.find("[B]"), a = tpl.find("[A]");
  tpl.replace(a, 3, "[B]");
  tpl.replace(b, 3, "[A]");
  return tpl;
}

template <class T>
std::vector<T> pick(const std::vector<T>& from, size_t k, std::mt19937_64& rng) {
  std::vector<T> v = from;
  std::shuffle(v.begin(), v.end(), rng);
  v.resize(std::min(k, v.size()));
  return v;
}

/// A rendered Colored Objects example and the byte offsets of its three colour words.
struct ColoredExample {
  std::string text;
  size_t colour[3] = {0, 0, 0};     ///< byte offset of each listed colour
  size_t objectLast[3] = {0, 0, 0}; ///< byte offset of each listed object's last character
  size_t questionObjectLast = 0;    ///< byte offset of the asked object's last character in the question
};

ColoredExample renderColoredExample(const std::vector<std::string>& cs, const std::vector<std::string>& os,
                                    const std::string& surface, const std::string& start, size_t query) {
  ColoredExample e;
  e.text = fmt::format("Q: On the {}, {} ", surface, start);
  for (size_t i = 0; i < 3; ++i) {
    e.text += i == 0 ? "" : i == 1 ? ", " : ", and ";
    e.text += cs[i][0] == 'o' ? "an " : "a ";
    e.colour[i] = e.text.size();
    e.text += cs[i] + " " + os[i];
    e.objectLast[i] = e.text.size() - 1;
  }
  e.text += fmt::format(". What color is the {}", os[query]);
  e.questionObjectLast = e.text.size() - 1;
  e.text += "?\nA:";
  return e;
}

}  // namespace

CausalDataset ioiDataset(const Tokenizer& tok, const IoiOptions& o) {
  if (o.n < 1) throw InputError(fmt::format("ioi dataset: --n must be ≥ 1, found {}", o.n));
  if (o.nTemplates < 1 || o.nTemplates > 15) throw InputError(fmt::format("ioi dataset: templates must be 1..15, found {}", o.nTemplates));
  CausalDataset ds;
  ds.task = "ioi";
  std::vector<std::string> names;
  for (const auto& n : ioiNames()) (singleToken(tok, " " + n) ? names : ds.droppedWords).push_back(n);
  if (names.size() < 5) throw InputError(fmt::format("ioi dataset: only {} names are single tokens in this tokenizer (need 5)", names.size()));
  std::vector<std::string> templates;
  const auto& base = ioiTemplates();
  if (o.order == "mixed") {
    const int k = std::min(o.nTemplates / 2 == 0 ? 1 : o.nTemplates / 2, 15);
    for (int i = 0; i < k; ++i) templates.push_back(base[static_cast<size_t>(i)]);
    for (int i = 0; i < k; ++i) templates.push_back(abba(base[static_cast<size_t>(i)]));
  } else if (o.order == "baba" || o.order == "abba") {
    for (int i = 0; i < o.nTemplates; ++i)
      templates.push_back(o.order == "baba" ? base[static_cast<size_t>(i)] : abba(base[static_cast<size_t>(i)]));
  } else {
    throw InputError(fmt::format("ioi dataset: order '{}' is unknown (expected mixed, baba or abba)", o.order));
  }
  std::mt19937_64 rng(o.seed);
  for (int i = 0; i < o.n; ++i) {
    const auto t = static_cast<size_t>(rng() % templates.size());
    const auto nm = pick(names, 5, rng);
    const std::string place = kPlaces[rng() % kPlaces.size()], object = kIoiObjects[rng() % kIoiObjects.size()];
    CausalPrompt p;
    const std::string io = nm[0], s = nm[1];
    const IoiRendered clean = renderIoi(templates[t], io, s, s, place, object);
    p.clean = clean.text;
    p.corrupted = o.corruption == IoiCorruption::Abc ? renderIoi(templates[t], nm[2], nm[3], nm[4], place, object).text
                                                     : renderIoi(templates[t], io, s, io, place, object).text;
    // Role positions in encode(clean) (tokenizeDataset shifts them past a BOS it prepends).
    const Encoding enc = tok.encode(p.clean);
    p.positions["IO"] = datasetTokenAt(enc, p.clean, clean.io);
    p.positions["S1"] = datasetTokenAt(enc, p.clean, clean.s1);
    p.positions["S1+1"] = p.positions["S1"] + 1;
    p.positions["S2"] = datasetTokenAt(enc, p.clean, clean.s2);
    p.positions["END"] = static_cast<int64_t>(enc.ids.size()) - 1;
    p.answer = " " + io;
    p.incorrect = " " + s;
    p.templateId = static_cast<int>(t);
    ds.prompts.push_back(std::move(p));
  }
  return ds;
}

CausalDataset coloredObjectsDataset(const Tokenizer& tok, const ColoredObjectsOptions& o) {
  if (o.n < 1) throw InputError(fmt::format("colored-objects dataset: --n must be ≥ 1, found {}", o.n));
  CausalDataset ds;
  ds.task = "colored-objects";
  std::vector<std::string> colours;
  for (const auto& c : kColours) (singleToken(tok, " " + c) ? colours : ds.droppedWords).push_back(c);
  if (colours.size() < 3) throw InputError(fmt::format("colored-objects dataset: only {} colours are single tokens (need 3)", colours.size()));
  std::mt19937_64 rng(o.seed);
  for (int i = 0; i < o.n; ++i) {
    // The solved shot, answered as the query: " " + the lower-case colour, the same token as that colour
    // in the prompt (Merullo et al.'s data uses title case; see coloredObjectsDataset).
    const auto sc = pick(colours, 3, rng);
    const auto so = pick(kCoObjects, 3, rng);
    const size_t sq = rng() % 3;
    const std::string shot = renderColoredExample(sc, so, kSurfaces[rng() % 3], kStarts[rng() % 3], sq).text + " " + sc[sq] + "\n";
    // The query and its mindiff twin (another object of the same example).
    const auto c = pick(colours, 3, rng);
    const auto ob = pick(kCoObjects, 3, rng);
    const std::string surface = kSurfaces[rng() % 3], start = kStarts[rng() % 3];
    const size_t q = rng() % 3, other = (q + 1 + rng() % 2) % 3;
    CausalPrompt p;
    const ColoredExample query = renderColoredExample(c, ob, surface, start, q);
    p.clean = shot + query.text;
    p.corrupted = shot + renderColoredExample(c, ob, surface, start, other).text;
    p.answer = " " + c[q];
    p.incorrect = " " + c[other];
    p.templateId = static_cast<int>(q);
    // Role positions in encode(clean): the query's answer colour and its two other colours.
    const Encoding enc = tok.encode(p.clean);
    int wrong = 0;
    for (size_t k = 0; k < 3; ++k)
      p.positions[k == q ? std::string("ANSWER") : fmt::format("INCORRECT{}", ++wrong)] =
          datasetTokenAt(enc, p.clean, shot.size() + query.colour[k]);
    // The asked object, the repeated token of this task (IOI's S1 / S2 analogues for circuit stages):
    // OBJ1 its mention in the list, OBJ2 its mention in the question (each its last token).
    p.positions["OBJ1"] = datasetTokenAt(enc, p.clean, shot.size() + query.objectLast[q]);
    p.positions["OBJ1+1"] = p.positions["OBJ1"] + 1;
    p.positions["OBJ2"] = datasetTokenAt(enc, p.clean, shot.size() + query.questionObjectLast);
    p.positions["END"] = static_cast<int64_t>(enc.ids.size()) - 1;
    ds.prompts.push_back(std::move(p));
  }
  return ds;
}

void writeJsonl(const CausalDataset& ds, const std::filesystem::path& path) {
  const auto tmp = std::filesystem::path(path.string() + ".partial");
  {
    std::ofstream out(tmp);
    if (!out) throw InputError(fmt::format("{}: cannot write the dataset", path.string()));
    for (const auto& p : ds.prompts) {
      nlohmann::json j;
      if (!p.clean.empty() || p.cleanIds.empty()) j["clean"] = p.clean;
      if (!p.corrupted.empty() || p.corruptedIds.empty()) j["corrupted"] = p.corrupted;
      if (!p.cleanIds.empty()) j["clean_ids"] = p.cleanIds;
      if (!p.corruptedIds.empty()) j["corrupted_ids"] = p.corruptedIds;
      if (!p.answer.empty()) j["answer"] = p.answer;
      else j["answer"] = p.answerId;
      if (!p.incorrect.empty()) j["incorrect"] = p.incorrect;
      else j["incorrect"] = p.incorrectId;
      if (p.answerId >= 0) j["answer_id"] = p.answerId;
      if (p.incorrectId >= 0) j["incorrect_id"] = p.incorrectId;
      if (p.templateId >= 0) j["template"] = p.templateId;
      if (!p.positions.empty()) j["positions"] = p.positions;
      out << j.dump() << '\n';
    }
    if (!out) throw InputError(fmt::format("{}: write failed", path.string()));
  }
  std::filesystem::rename(tmp, path);
}

CausalDataset readJsonl(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot open the dataset", path.string()));
  CausalDataset ds;
  ds.task = path.stem().string();
  std::string line;
  int lineNo = 0;
  auto ids = [&](const nlohmann::json& v, const char* key) {
    if (!v.is_array() || v.empty()) throw InputError(fmt::format("{}:{}: \"{}\" must be a non-empty array of token ids", path.string(), lineNo, key));
    std::vector<int64_t> out;
    for (const auto& x : v) {
      if (!x.is_number_integer()) throw InputError(fmt::format("{}:{}: \"{}\" holds {}, expected integer ids", path.string(), lineNo, key, x.dump()));
      out.push_back(x.get<int64_t>());
    }
    return out;
  };
  while (std::getline(in, line)) {
    ++lineNo;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    checkJsonLimits(line, fmt::format("{}:{}", path.string(), lineNo), kConfigJsonLimits);  // ≤ 16 MiB, depth ≤ 64
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(fmt::format("{}:{}: malformed JSON ({})", path.string(), lineNo, e.what()));
    }
    if (!j.is_object()) throw InputError(fmt::format("{}:{}: expected one JSON object per line", path.string(), lineNo));
    CausalPrompt p;
    for (const char* k : {"clean", "corrupted"})
      if (!j.contains(k) && !j.contains(std::string(k) + "_ids"))
        throw InputError(fmt::format("{}:{}: missing \"{}\" (or \"{}_ids\")", path.string(), lineNo, k, k));
    if (j.contains("clean") && j["clean"].is_string()) p.clean = j["clean"].get<std::string>();
    if (j.contains("corrupted") && j["corrupted"].is_string()) p.corrupted = j["corrupted"].get<std::string>();
    if (j.contains("clean_ids")) p.cleanIds = ids(j["clean_ids"], "clean_ids");
    if (j.contains("corrupted_ids")) p.corruptedIds = ids(j["corrupted_ids"], "corrupted_ids");
    for (auto [key, text, id] : {std::tuple{"answer", &p.answer, &p.answerId}, std::tuple{"incorrect", &p.incorrect, &p.incorrectId}}) {
      if (!j.contains(key)) throw InputError(fmt::format("{}:{}: missing \"{}\"", path.string(), lineNo, key));
      const auto& v = j[key];
      if (v.is_string()) *text = v.get<std::string>();
      else if (v.is_number_integer()) *id = v.get<int64_t>();
      else throw InputError(fmt::format("{}:{}: \"{}\" must be a string or a token id", path.string(), lineNo, key));
      const std::string idKey = std::string(key) + "_id";
      if (j.contains(idKey) && j[idKey].is_number_integer()) *id = j[idKey].get<int64_t>();
    }
    if (const auto t = j.find("template"); t != j.end() && !t->is_null()) {
      if (!t->is_number_integer() || t->get<int64_t>() < -1 || t->get<int64_t>() > std::numeric_limits<int>::max())
        throw InputError(fmt::format("{}:{}: \"template\" must be an integer template id (-1 for none), found {}", path.string(), lineNo, t->dump()));
      p.templateId = t->get<int>();
    }
    if (const auto pos = j.find("positions"); pos != j.end() && !pos->is_null()) {
      if (!pos->is_object())
        throw InputError(fmt::format("{}:{}: \"positions\" must be an object of role → token position", path.string(), lineNo));
      for (const auto& [role, v] : pos->items()) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0)
          throw InputError(fmt::format("{}:{}: position of role '{}' must be a non-negative integer, found {}", path.string(), lineNo,
                                       role, v.dump()));
        p.positions[role] = v.get<int64_t>();
      }
    }
    ds.prompts.push_back(std::move(p));
  }
  if (ds.prompts.empty()) throw InputError(fmt::format("{}: the dataset holds no prompts", path.string()));
  return ds;
}

void tokenizeDataset(CausalDataset& ds, const Tokenizer* tok, std::optional<int64_t> bos) {
  int idx = 0;
  for (auto& p : ds.prompts) {
    auto need = [&](const char* what) {
      if (!tok) throw InputError(fmt::format("dataset prompt {}: {} is text but the model has no tokenizer.json (give ids)", idx, what));
    };
    bool bosAdded = false;
    auto enc = [&](const std::string& text) {
      std::vector<int64_t> v = tok->encode(text).ids;
      bosAdded = bos && (v.empty() || v.front() != *bos);
      if (bosAdded) v.insert(v.begin(), *bos);
      return v;
    };
    if (p.cleanIds.empty()) {
      need("clean");
      p.cleanIds = enc(p.clean);
      // Role positions were counted in encode(clean); a prepended BOS moves every token one on.
      if (bosAdded)
        for (auto& [role, pos] : p.positions) ++pos;
    }
    for (const auto& [role, pos] : p.positions)
      if (pos < 0 || pos >= static_cast<int64_t>(p.cleanIds.size()))
        throw InputError(fmt::format("dataset prompt {}: role {} at position {} lies outside its {} clean tokens", idx, role, pos,
                                     p.cleanIds.size()));
    if (p.corruptedIds.empty()) {
      need("corrupted");
      p.corruptedIds = enc(p.corrupted);
    }
    for (auto [text, id, what] : {std::tuple{&p.answer, &p.answerId, "answer"}, std::tuple{&p.incorrect, &p.incorrectId, "incorrect"}}) {
      if (*id >= 0) continue;
      need(what);
      const auto v = tok->encode(*text).ids;
      if (v.size() != 1)
        throw InputError(fmt::format("dataset prompt {}: {} '{}' is {} tokens, expected exactly one", idx, what, *text, v.size()));
      *id = v[0];
    }
    ++idx;
  }
}

// Why groups by length and not one padded batch: a group is a batch of equal-length prompts with no pad
// token and no attention mask, so each row is computed exactly as the prompt alone (same positions, same
// causal mask, the metric read at the prompt's own last position). Padding would change what the kernels
// see (masked keys, a longer sequence, reads at per-row positions), and "all positions" patches would
// write into pad positions. Combining the groups' per-prompt metrics (patch_groups.hpp) then gives the
// means over every prompt, weighted by each group's prompt count.
std::vector<PatchGroup> toPatchGroups(const CausalDataset& ds, int* dropped) {
  std::map<size_t, std::vector<int64_t>> byLength;  // length → prompt indices, in dataset order
  int skip = 0;
  for (size_t i = 0; i < ds.prompts.size(); ++i) {
    const auto& p = ds.prompts[i];
    if (p.cleanIds.empty() || p.cleanIds.size() != p.corruptedIds.size() || p.answerId < 0 || p.incorrectId < 0) ++skip;
    else byLength[p.cleanIds.size()].push_back(static_cast<int64_t>(i));
  }
  if (byLength.empty()) throw InputError(fmt::format("{}: no prompt has clean and corrupted ids of equal length", ds.task));
  std::vector<PatchGroup> groups;
  for (const auto& [len, rows] : byLength) {
    std::vector<int64_t> clean, corrupt, correct, incorrect;
    PatchGroup g;
    for (const int64_t i : rows) {
      const auto& p = ds.prompts[static_cast<size_t>(i)];
      clean.insert(clean.end(), p.cleanIds.begin(), p.cleanIds.end());
      corrupt.insert(corrupt.end(), p.corruptedIds.begin(), p.corruptedIds.end());
      correct.push_back(p.answerId);
      incorrect.push_back(p.incorrectId);
      g.templateIds.push_back(p.templateId);
    }
    const auto n = static_cast<int64_t>(rows.size());
    g.inputs.clean = at::tensor(clean, at::kLong).view({n, static_cast<int64_t>(len)});      // [batch, pos]
    g.inputs.corrupt = at::tensor(corrupt, at::kLong).view({n, static_cast<int64_t>(len)});  // [batch, pos]
    g.inputs.correct = at::tensor(correct, at::kLong);                                       // [batch]
    g.inputs.incorrect = at::tensor(incorrect, at::kLong);                                   // [batch]
    g.promptIndex = rows;
    // Roles every prompt of the group names ([batch] positions).
    for (const auto& [role, unused] : ds.prompts[static_cast<size_t>(rows.front())].positions) {
      std::vector<int64_t> where;
      for (const int64_t i : rows) {
        const auto& pos = ds.prompts[static_cast<size_t>(i)].positions;
        const auto it = pos.find(role);
        if (it == pos.end()) break;
        where.push_back(it->second);
      }
      if (where.size() == rows.size()) g.inputs.roles[role] = at::tensor(where, at::kLong);  // [batch]
    }
    groups.push_back(std::move(g));
  }
  if (dropped) *dropped = skip;
  return groups;
}

at::Tensor rolePositions(const CausalDataset& ds, const PatchGroup& group, const std::string& role) {
  std::vector<int64_t> out;
  for (const int64_t i : group.promptIndex) {
    const auto& pos = ds.prompts.at(static_cast<size_t>(i)).positions;
    const auto it = pos.find(role);
    if (it == pos.end()) throw InputError(fmt::format("{}: prompt {} has no position for role '{}'", ds.task, i, role));
    out.push_back(it->second);
  }
  return at::tensor(out, at::kLong);  // [batch]
}

CausalDataset loadCausalDataset(const CausalSource& src, const Tokenizer* tok, std::optional<int64_t> bos) {
  CausalDataset ds;
  const bool rows = !src.cleanIds.empty() || !src.corruptIds.empty();
  if (rows == !src.task.empty())
    throw InputError("give either a task/dataset (ioi, colored-objects, FILE.jsonl) or --clean-ids and --corrupt-ids");
  if (rows) {
    if (src.cleanIds.size() != src.corruptIds.size())
      throw InputError(fmt::format("--clean-ids has {} rows but --corrupt-ids has {}", src.cleanIds.size(), src.corruptIds.size()));
    if (src.answerIds.size() != 2) throw InputError("--clean-ids/--corrupt-ids need --answer-ids CORRECT,INCORRECT");
    ds.task = "ids";
    for (size_t i = 0; i < src.cleanIds.size(); ++i) {
      CausalPrompt p;
      p.cleanIds = src.cleanIds[i];
      p.corruptedIds = src.corruptIds[i];
      p.answerId = src.answerIds[0];
      p.incorrectId = src.answerIds[1];
      ds.prompts.push_back(std::move(p));
    }
    return ds;
  }
  if (src.task == "ioi" || src.task == "colored-objects") {
    if (!tok) throw InputError(fmt::format("task {}: the model folder has no tokenizer.json (give a JSONL dataset with ids)", src.task));
    if (src.task == "ioi") {
      IoiOptions o;
      o.n = src.n;
      o.seed = src.seed;
      o.corruption = src.ioiCorruption;
      ds = ioiDataset(*tok, o);
    } else {
      ColoredObjectsOptions o;
      o.n = src.n;
      o.seed = src.seed;
      ds = coloredObjectsDataset(*tok, o);
    }
  } else {
    ds = readJsonl(src.task);
  }
  tokenizeDataset(ds, tok, bos);
  return ds;
}

}  // namespace mechscope::analysis
