#include "core/synth/planted_tasks.hpp"

#include <algorithm>
#include <random>
#include <sstream>

#include "core/synth/planted_vocab.hpp"

namespace mechscope::planted {
namespace {

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::vector<std::string> wordsOfKind(WordKind kind) {
  std::vector<std::string> out;
  for (int64_t id : idsOfKind(kind)) out.push_back(vocabulary()[static_cast<size_t>(id)].text);
  return out;
}

template <class T>
std::vector<T> sample(const std::vector<T>& from, size_t k, std::mt19937_64& rng) {
  std::vector<T> v = from;
  std::shuffle(v.begin(), v.end(), rng);
  v.resize(k);
  return v;
}

std::string fill(std::string tpl, const std::string& key, const std::string& value) {
  for (size_t p; (p = tpl.find(key)) != std::string::npos;) tpl.replace(p, key.size(), value);
  return tpl;
}

}  // namespace

std::vector<TaskPrompt> ioiPrompts(int n, uint64_t seed) {
  static const std::vector<std::string> templates = {
      "When {A} and {B} were at the {P} , {B} gave a {O} to",
      "When {B} and {A} were at the {P} , {B} gave a {O} to",
      "Then {A} and {B} had fun at the {P} . {B} gave a {O} to",
      "Then {B} and {A} had fun at the {P} . {B} gave a {O} to",
  };
  const auto names = wordsOfKind(WordKind::Name), objects = wordsOfKind(WordKind::Object);
  const std::vector<std::string> places = {"store", "park"};
  std::mt19937_64 rng(seed);
  std::vector<TaskPrompt> out;
  for (int i = 0; i < n; ++i) {
    const int t = static_cast<int>(rng() % templates.size());
    const auto abc = sample(names, 5, rng);
    const std::string place = places[rng() % places.size()], object = objects[rng() % objects.size()];
    auto render = [&](const std::string& a, const std::string& b1, const std::string& b2) {
      // {B} occurs twice: the first occurrence is S1, the second S2.
      std::string s = fill(templates[static_cast<size_t>(t)], "{A}", a);
      const size_t first = s.find("{B}");
      s.replace(first, 3, b1);
      s = fill(s, "{B}", b2);
      return words(fill(fill(s, "{P}", place), "{O}", object));
    };
    TaskPrompt p;
    p.words = render(abc[0], abc[1], abc[1]);
    p.answer = abc[0];
    p.incorrect = abc[1];
    p.corrupted = render(abc[2], abc[3], abc[4]);  // p_ABC: three different names, no repeat
    p.templateId = t;
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<TaskPrompt> coloredObjectsPrompts(int n, uint64_t seed) {
  const auto colours = wordsOfKind(WordKind::Colour), objects = wordsOfKind(WordKind::Object);
  std::mt19937_64 rng(seed);
  std::vector<TaskPrompt> out;
  for (int i = 0; i < n; ++i) {
    const auto c = sample(colours, 3, rng);
    const auto o = sample(objects, 3, rng);
    const int q = static_cast<int>(rng() % 3), other = (q + 1 + static_cast<int>(rng() % 2)) % 3;
    auto render = [&](int query) {
      return words("On the table I see a " + c[0] + " " + o[0] + " , a " + c[1] + " " + o[1] + " and a " + c[2] +
                   " " + o[2] + " . The " + o[static_cast<size_t>(query)] + " is");
    };
    TaskPrompt p;
    p.words = render(q);
    p.answer = c[static_cast<size_t>(q)];
    p.incorrect = c[static_cast<size_t>(other)];
    p.corrupted = render(other);  // "mindiff": only the query object changes
    out.push_back(std::move(p));
  }
  return out;
}

NeedlePrompt needlePrompt(int haystackWords, double depth, uint64_t seed) {
  const auto filler = wordsOfKind(WordKind::Filler);
  const auto needle = wordsOfKind(WordKind::Needle);  // magic number seven hundred twelve
  std::mt19937_64 rng(seed);
  std::vector<std::string> hay;
  for (int i = 0; i < haystackWords; ++i) hay.push_back(filler[rng() % filler.size()]);
  const auto at = static_cast<size_t>(std::clamp(depth, 0.0, 1.0) * haystackWords);
  NeedlePrompt p;
  p.words.assign(hay.begin(), hay.begin() + static_cast<long>(at));
  p.needleStart = static_cast<int64_t>(p.words.size()) + 1;  // +1 for BOS
  p.words.insert(p.words.end(), needle.begin(), needle.end());
  p.needleEnd = p.needleStart + static_cast<int64_t>(needle.size());
  p.words.insert(p.words.end(), hay.begin() + static_cast<long>(at), hay.end());
  p.words.push_back(needle.front());
  p.answer.assign(needle.begin() + 1, needle.end());
  return p;
}

std::vector<std::string> idleText() {
  return words(
      "day was long quiet in town people walked along river sun When Then were at had fun On I see The is magic "
      "number seven hundred twelve the a to and gave");
}

std::vector<int64_t> toIds(const std::vector<std::string>& ws) {
  std::vector<int64_t> ids{0};
  for (const auto& w : ws) ids.push_back(tokenId(w));
  return ids;
}

}  // namespace mechscope::planted
