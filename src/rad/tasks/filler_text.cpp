// Natural-text filler for the needle-in-a-haystack task: Ecclesiastes 1-3 (King James Version,
// public domain), cycled from a random start. Built in so the task needs no data files.
#include "rad/tasks/filler_text.h"

#include <sstream>

namespace rad::tasks {
namespace {

const char* const kFiller =
    "The words of the Preacher, the son of David, king in Jerusalem. "
    "Vanity of vanities, saith the Preacher, vanity of vanities; all is vanity. "
    "What profit hath a man of all his labour which he taketh under the sun? "
    "One generation passeth away, and another generation cometh: but the earth abideth for ever. "
    "The sun also ariseth, and the sun goeth down, and hasteth to his place where he arose. "
    "The wind goeth toward the south, and turneth about unto the north; it whirleth about "
    "continually, and the wind returneth again according to his circuits. "
    "All the rivers run into the sea; yet the sea is not full; unto the place from whence the rivers "
    "come, thither they return again. "
    "All things are full of labour; man cannot utter it: the eye is not satisfied with seeing, nor "
    "the ear filled with hearing. "
    "The thing that hath been, it is that which shall be; and that which is done is that which shall "
    "be done: and there is no new thing under the sun. "
    "Is there any thing whereof it may be said, See, this is new? it hath been already of old time, "
    "which was before us. "
    "There is no remembrance of former things; neither shall there be any remembrance of things that "
    "are to come with those that shall come after. "
    "I the Preacher was king over Israel in Jerusalem. "
    "And I gave my heart to seek and search out by wisdom concerning all things that are done under "
    "heaven: this sore travail hath God given to the sons of man to be exercised therewith. "
    "I have seen all the works that are done under the sun; and, behold, all is vanity and vexation "
    "of spirit. "
    "That which is crooked cannot be made straight: and that which is wanting cannot be numbered. "
    "I communed with mine own heart, saying, Lo, I am come to great estate, and have gotten more "
    "wisdom than all they that have been before me in Jerusalem: yea, my heart had great experience "
    "of wisdom and knowledge. "
    "And I gave my heart to know wisdom, and to know madness and folly: I perceived that this also "
    "is vexation of spirit. "
    "For in much wisdom is much grief: and he that increaseth knowledge increaseth sorrow. "
    "I said in mine heart, Go to now, I will prove thee with mirth, therefore enjoy pleasure: and, "
    "behold, this also is vanity. "
    "I said of laughter, It is mad: and of mirth, What doeth it? "
    "I sought in mine heart to give myself unto wine, yet acquainting mine heart with wisdom; and to "
    "lay hold on folly, till I might see what was that good for the sons of men, which they should "
    "do under the heaven all the days of their life. "
    "I made me great works; I builded me houses; I planted me vineyards: "
    "I made me gardens and orchards, and I planted trees in them of all kind of fruits: "
    "I made me pools of water, to water therewith the wood that bringeth forth trees: "
    "I got me servants and maidens, and had servants born in my house; also I had great possessions "
    "of great and small cattle above all that were in Jerusalem before me: "
    "I gathered me also silver and gold, and the peculiar treasure of kings and of the provinces: I "
    "gat me men singers and women singers, and the delights of the sons of men, as musical "
    "instruments, and that of all sorts. "
    "So I was great, and increased more than all that were before me in Jerusalem: also my wisdom "
    "remained with me. "
    "And whatsoever mine eyes desired I kept not from them, I withheld not my heart from any joy; "
    "for my heart rejoiced in all my labour: and this was my portion of all my labour. "
    "Then I looked on all the works that my hands had wrought, and on the labour that I had laboured "
    "to do: and, behold, all was vanity and vexation of spirit, and there was no profit under the "
    "sun. "
    "And I turned myself to behold wisdom, and madness, and folly: for what can the man do that "
    "cometh after the king? even that which hath been already done. "
    "Then I saw that wisdom excelleth folly, as far as light excelleth darkness. "
    "The wise man's eyes are in his head; but the fool walketh in darkness: and I myself perceived "
    "also that one event happeneth to them all. "
    "Then said I in my heart, As it happeneth to the fool, so it happeneth even to me; and why was I "
    "then more wise? Then I said in my heart, that this also is vanity. "
    "For there is no remembrance of the wise more than of the fool for ever; seeing that which now "
    "is in the days to come shall all be forgotten. And how dieth the wise man? as the fool. "
    "Therefore I hated life; because the work that is wrought under the sun is grievous unto me: for "
    "all is vanity and vexation of spirit. "
    "Yea, I hated all my labour which I had taken under the sun: because I should leave it unto the "
    "man that shall be after me. "
    "And who knoweth whether he shall be a wise man or a fool? yet shall he have rule over all my "
    "labour wherein I have laboured, and wherein I have shewed myself wise under the sun. This is "
    "also vanity. "
    "Therefore I went about to cause my heart to despair of all the labour which I took under the "
    "sun. "
    "For there is a man whose labour is in wisdom, and in knowledge, and in equity; yet to a man "
    "that hath not laboured therein shall he leave it for his portion. This also is vanity and a "
    "great evil. "
    "For what hath man of all his labour, and of the vexation of his heart, wherein he hath laboured "
    "under the sun? "
    "For all his days are sorrows, and his travail grief; yea, his heart taketh not rest in the "
    "night. This is also vanity. "
    "There is nothing better for a man, than that he should eat and drink, and that he should make "
    "his soul enjoy good in his labour. This also I saw, that it was from the hand of God. "
    "For who can eat, or who else can hasten hereunto, more than I? "
    "For God giveth to a man that is good in his sight wisdom, and knowledge, and joy: but to the "
    "sinner he giveth travail, to gather and to heap up, that he may give to him that is good before "
    "God. This also is vanity and vexation of spirit. "
    "To every thing there is a season, and a time to every purpose under the heaven: "
    "A time to be born, and a time to die; a time to plant, and a time to pluck up that which is "
    "planted; "
    "A time to kill, and a time to heal; a time to break down, and a time to build up; "
    "A time to weep, and a time to laugh; a time to mourn, and a time to dance; "
    "A time to cast away stones, and a time to gather stones together; a time to embrace, and a time "
    "to refrain from embracing; "
    "A time to get, and a time to lose; a time to keep, and a time to cast away; "
    "A time to rend, and a time to sew; a time to keep silence, and a time to speak; "
    "A time to love, and a time to hate; a time of war, and a time of peace. "
    "What profit hath he that worketh in that wherein he laboureth? "
    "I have seen the travail, which God hath given to the sons of men to be exercised in it. "
    "He hath made every thing beautiful in his time: also he hath set the world in their heart, so "
    "that no man can find out the work that God maketh from the beginning to the end. "
    "I know that there is no good in them, but for a man to rejoice, and to do good in his life. "
    "And also that every man should eat and drink, and enjoy the good of all his labour, it is the "
    "gift of God. "
    "I know that, whatsoever God doeth, it shall be for ever: nothing can be put to it, nor any "
    "thing taken from it: and God doeth it, that men should fear before him. "
    "That which hath been is now; and that which is to be hath already been; and God requireth that "
    "which is past. "
    "And moreover I saw under the sun the place of judgment, that wickedness was there; and the "
    "place of righteousness, that iniquity was there. "
    "I said in mine heart, God shall judge the righteous and the wicked: for there is a time there "
    "for every purpose and for every work. "
    "I said in mine heart concerning the estate of the sons of men, that God might manifest them, "
    "and that they might see that they themselves are beasts. "
    "For that which befalleth the sons of men befalleth beasts; even one thing befalleth them: as "
    "the one dieth, so dieth the other; yea, they have all one breath; so that a man hath no "
    "preeminence above a beast: for all is vanity. "
    "All go unto one place; all are of the dust, and all turn to dust again. "
    "Who knoweth the spirit of man that goeth upward, and the spirit of the beast that goeth "
    "downward to the earth? "
    "Wherefore I perceive that there is nothing better, than that a man should rejoice in his own "
    "works; for that is his portion: for who shall bring him to see what shall be after him? "
    ;

const std::vector<std::string>& filler_vocabulary() {
  static const std::vector<std::string> words = [] {
    std::vector<std::string> out;
    std::istringstream in(kFiller);
    std::string w;
    while (in >> w) out.push_back(w);
    return out;
  }();
  return words;
}

}  // namespace

std::vector<std::string> filler_words(int64_t count, std::mt19937_64& rng) {
  const auto& words = filler_vocabulary();
  size_t start = std::uniform_int_distribution<size_t>(0, words.size() - 1)(rng);
  std::vector<std::string> out;
  out.reserve(count);
  for (int64_t i = 0; i < count; ++i) out.push_back(words[(start + i) % words.size()]);
  return out;
}

}  // namespace rad::tasks
