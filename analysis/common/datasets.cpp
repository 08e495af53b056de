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

void replaceFirst(std::string& s, const std::string& key, const std::string& value) {
  const size_t p = s.find(key);
  if (p != std::string::npos) s.replace(p, key.size(), value);
}
void replaceAll(std::string& s, const std::string& key, const std::string& value) {
  for (size_t p; (p = s.find(key)) != std::string::npos;) s.replace(p, key.size(), value);
}

std::string renderIoi(std::string tpl, const std::string& io, const std::string& s1, const std::string& s2,
                      const std::string& place, const std::string& object) {
  replaceAll(tpl, "[A]", io);
  replaceFirst(tpl, "[B]", s1);
  replaceFirst(tpl, "[B]", s2);
  replaceAll(tpl, "[PLACE]", place);
  replaceAll(tpl, "[OBJECT]", object);
  return tpl;
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

std::string title(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
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
    p.clean = renderIoi(templates[t], io, s, s, place, object);
    p.corrupted = o.corruption == IoiCorruption::Abc ? renderIoi(templates[t], nm[2], nm[3], nm[4], place, object)
                                                     : renderIoi(templates[t], io, s, io, place, object);
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
  for (const auto& c : kColours)
    (singleToken(tok, " " + c) && singleToken(tok, " " + title(c)) ? colours : ds.droppedWords).push_back(c);
  if (colours.size() < 3) throw InputError(fmt::format("colored-objects dataset: only {} colours are single tokens (need 3)", colours.size()));
  std::mt19937_64 rng(o.seed);
  auto example = [&](const std::vector<std::string>& cs, const std::vector<std::string>& os, const std::string& surface,
                     const std::string& start, size_t query) {
    std::vector<std::string> items;
    for (size_t i = 0; i < 3; ++i) items.push_back(fmt::format("{} {} {}", cs[i][0] == 'o' ? "an" : "a", cs[i], os[i]));
    return fmt::format("Q: On the {}, {} {}, {}, and {}. What color is the {}?\nA:", surface, start, items[0], items[1],
                       items[2], os[query]);
  };
  for (int i = 0; i < o.n; ++i) {
    // The solved shot.
    const auto sc = pick(colours, 3, rng);
    const auto so = pick(kCoObjects, 3, rng);
    const size_t sq = rng() % 3;
    const std::string shot = example(sc, so, kSurfaces[rng() % 3], kStarts[rng() % 3], sq) + " " + title(sc[sq]) + "\n";
    // The query and its mindiff twin (another object of the same example).
    const auto c = pick(colours, 3, rng);
    const auto ob = pick(kCoObjects, 3, rng);
    const std::string surface = kSurfaces[rng() % 3], start = kStarts[rng() % 3];
    const size_t q = rng() % 3, other = (q + 1 + rng() % 2) % 3;
    CausalPrompt p;
    p.clean = shot + example(c, ob, surface, start, q);
    p.corrupted = shot + example(c, ob, surface, start, other);
    p.answer = " " + title(c[q]);
    p.incorrect = " " + title(c[other]);
    p.templateId = static_cast<int>(q);
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
    auto enc = [&](const std::string& text) {
      std::vector<int64_t> v = tok->encode(text).ids;
      if (bos && (v.empty() || v.front() != *bos)) v.insert(v.begin(), *bos);
      return v;
    };
    if (p.cleanIds.empty()) {
      need("clean");
      p.cleanIds = enc(p.clean);
    }
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

PatchInputs toPatchInputs(const CausalDataset& ds, int* dropped, std::vector<int>* templateIds) {
  std::map<size_t, int> counts;
  for (const auto& p : ds.prompts)
    if (!p.cleanIds.empty() && p.cleanIds.size() == p.corruptedIds.size()) ++counts[p.cleanIds.size()];
  if (counts.empty()) throw InputError(fmt::format("{}: no prompt has clean and corrupted ids of equal length", ds.task));
  const size_t len = std::max_element(counts.begin(), counts.end(), [](const auto& a, const auto& b) { return a.second < b.second; })->first;
  std::vector<int64_t> clean, corrupt, correct, incorrect;
  int n = 0, skip = 0;
  for (const auto& p : ds.prompts) {
    if (p.cleanIds.size() != len || p.corruptedIds.size() != len || p.answerId < 0 || p.incorrectId < 0) {
      ++skip;
      continue;
    }
    clean.insert(clean.end(), p.cleanIds.begin(), p.cleanIds.end());
    corrupt.insert(corrupt.end(), p.corruptedIds.begin(), p.corruptedIds.end());
    correct.push_back(p.answerId);
    incorrect.push_back(p.incorrectId);
    if (templateIds) templateIds->push_back(p.templateId);
    ++n;
  }
  if (dropped) *dropped = skip;
  PatchInputs in;
  in.clean = at::tensor(clean, at::kLong).view({n, static_cast<int64_t>(len)});
  in.corrupt = at::tensor(corrupt, at::kLong).view({n, static_cast<int64_t>(len)});
  in.correct = at::tensor(correct, at::kLong);
  in.incorrect = at::tensor(incorrect, at::kLong);
  return in;
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

std::vector<int64_t> parseIdList(const std::string& text, const std::string& what) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    try {
      size_t used = 0;
      const long long v = std::stoll(item, &used);
      if (used != item.size()) throw std::invalid_argument("trailing");
      out.push_back(v);
    } catch (const std::exception&) {
      throw InputError(fmt::format("{}: '{}' is not a comma-separated list of integers", what, text));
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace mechscope::analysis
