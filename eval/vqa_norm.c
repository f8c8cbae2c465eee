// The VQA family's answer normalisations (eval/vqa_norm.h). Both official versions share the tables
// and the two passes; they differ in the interpreter (Unicode lower/split/strip, and re's \d: any
// decimal digit in Python 3, 0-9 in Python 2 without re.UNICODE) and in what runs before them.
#include "vqa_norm.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "pyunicode.h"

// The contraction table, as both official files spell it (keys with capitals never match: the
// words are lowered first; "somebody'd" -> "somebodyd" is the official's own entry).
static const char *const CONTRACTIONS[][2] = {
    {"aint", "ain't"},
    {"arent", "aren't"},
    {"cant", "can't"},
    {"couldve", "could've"},
    {"couldnt", "couldn't"},
    {"couldn'tve", "couldn't've"},
    {"couldnt've", "couldn't've"},
    {"didnt", "didn't"},
    {"doesnt", "doesn't"},
    {"dont", "don't"},
    {"hadnt", "hadn't"},
    {"hadnt've", "hadn't've"},
    {"hadn'tve", "hadn't've"},
    {"hasnt", "hasn't"},
    {"havent", "haven't"},
    {"hed", "he'd"},
    {"hed've", "he'd've"},
    {"he'dve", "he'd've"},
    {"hes", "he's"},
    {"howd", "how'd"},
    {"howll", "how'll"},
    {"hows", "how's"},
    {"Id've", "I'd've"},
    {"I'dve", "I'd've"},
    {"Im", "I'm"},
    {"Ive", "I've"},
    {"isnt", "isn't"},
    {"itd", "it'd"},
    {"itd've", "it'd've"},
    {"it'dve", "it'd've"},
    {"itll", "it'll"},
    {"let's", "let's"},
    {"maam", "ma'am"},
    {"mightnt", "mightn't"},
    {"mightnt've", "mightn't've"},
    {"mightn'tve", "mightn't've"},
    {"mightve", "might've"},
    {"mustnt", "mustn't"},
    {"mustve", "must've"},
    {"neednt", "needn't"},
    {"notve", "not've"},
    {"oclock", "o'clock"},
    {"oughtnt", "oughtn't"},
    {"ow's'at", "'ow's'at"},
    {"'ows'at", "'ow's'at"},
    {"'ow'sat", "'ow's'at"},
    {"shant", "shan't"},
    {"shed've", "she'd've"},
    {"she'dve", "she'd've"},
    {"she's", "she's"},
    {"shouldve", "should've"},
    {"shouldnt", "shouldn't"},
    {"shouldnt've", "shouldn't've"},
    {"shouldn'tve", "shouldn't've"},
    {"somebody'd", "somebodyd"},
    {"somebodyd've", "somebody'd've"},
    {"somebody'dve", "somebody'd've"},
    {"somebodyll", "somebody'll"},
    {"somebodys", "somebody's"},
    {"someoned", "someone'd"},
    {"someoned've", "someone'd've"},
    {"someone'dve", "someone'd've"},
    {"someonell", "someone'll"},
    {"someones", "someone's"},
    {"somethingd", "something'd"},
    {"somethingd've", "something'd've"},
    {"something'dve", "something'd've"},
    {"somethingll", "something'll"},
    {"thats", "that's"},
    {"thered", "there'd"},
    {"thered've", "there'd've"},
    {"there'dve", "there'd've"},
    {"therere", "there're"},
    {"theres", "there's"},
    {"theyd", "they'd"},
    {"theyd've", "they'd've"},
    {"they'dve", "they'd've"},
    {"theyll", "they'll"},
    {"theyre", "they're"},
    {"theyve", "they've"},
    {"twas", "'twas"},
    {"wasnt", "wasn't"},
    {"wed've", "we'd've"},
    {"we'dve", "we'd've"},
    {"weve", "we've"},
    {"werent", "weren't"},
    {"whatll", "what'll"},
    {"whatre", "what're"},
    {"whats", "what's"},
    {"whatve", "what've"},
    {"whens", "when's"},
    {"whered", "where'd"},
    {"wheres", "where's"},
    {"whereve", "where've"},
    {"whod", "who'd"},
    {"whod've", "who'd've"},
    {"who'dve", "who'd've"},
    {"wholl", "who'll"},
    {"whos", "who's"},
    {"whove", "who've"},
    {"whyll", "why'll"},
    {"whyre", "why're"},
    {"whys", "why's"},
    {"wont", "won't"},
    {"wouldve", "would've"},
    {"wouldnt", "wouldn't"},
    {"wouldnt've", "wouldn't've"},
    {"wouldn'tve", "wouldn't've"},
    {"yall", "y'all"},
    {"yall'll", "y'all'll"},
    {"y'allll", "y'all'll"},
    {"yall'd've", "y'all'd've"},
    {"y'alld've", "y'all'd've"},
    {"y'all'dve", "y'all'd've"},
    {"youd", "you'd"},
    {"youd've", "you'd've"},
    {"you'dve", "you'd've"},
    {"youll", "you'll"},
    {"youre", "you're"},
    {"youve", "you've"},
};

static const char *const NUMBERS[][2] = {
    {"none", "0"}, {"zero", "0"}, {"one", "1"},   {"two", "2"},   {"three", "3"}, {"four", "4"},
    {"five", "5"}, {"six", "6"},  {"seven", "7"}, {"eight", "8"}, {"nine", "9"},  {"ten", "10"},
};

static const char *const ARTICLES[] = {"a", "an", "the"};

// The punctuation list, in the official order.
static const char PUNCT[] = {';',  '/', '[', ']', '"', '{', '}', '(', ')', '=', '+',
                             '\\', '_', '-', '>', '<', '@', '`', ',', '?', '!'};

// A digit, one or more commas, a digit: Python 3's COMMA_STRIP (?<=\d)(\,)+(?=\d) and Python 2's
// commaStrip (\d)(\,)(\d) both come down to it for a search (the commas of a run are adjacent), but
// Python 2's needs exactly one comma between the digits.
static int comma_between_digits(pyu_version v, const pyustr *s) {
    for (size_t i = 1; i < s->n; i++) {
        if (s->c[i] != ',' || s->c[i - 1] == ',' || !pyu_re_digit(v, s->c[i - 1])) continue;
        size_t j = i;
        while (j < s->n && s->c[j] == ',') j++;
        if (j < s->n && pyu_re_digit(v, s->c[j]) && (v == PYU3 || j == i + 1)) return 1;
    }
    return 0;
}

// process_punctuation / processPunctuation: each mark is removed where the input has it beside a
// space (or has a digit,digit comma anywhere), else turned into a space; then the first 32 periods
// that no digit follows (in the string as it then is) are removed.
static void punctuation(pyu_version v, pyustr *s) {
    pyustr in = {0};
    for (size_t i = 0; i < s->n; i++) pyustr_push(&in, s->c[i]);
    int comma = comma_between_digits(v, &in);
    for (size_t k = 0; k < sizeof PUNCT; k++) {
        uint32_t p = (uint32_t)(unsigned char)PUNCT[k];
        uint32_t a[2] = {p, ' '}, b[2] = {' ', p};
        int drop = pyu_contains(&in, a, 2) || pyu_contains(&in, b, 2) || comma;
        pyu_replace_char(s, p, drop ? 0 : ' ');
    }
    pyustr_free(&in);
    // PERIOD_STRIP (?!<=\d)(\.)(?!\d): the first lookahead asks for the text "<=" and a digit at the
    // period itself, which never holds, so a period goes unless a digit follows it.
    size_t k = 0, removed = 0, n = s->n;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s->c[i];
        if (c == '.' && removed < 32 && !(i + 1 < n && pyu_re_digit(v, s->c[i + 1]))) {
            removed++;
            continue;
        }
        s->c[k++] = c;
    }
    s->n = k;
}

static int word_is(const pyustr *w, size_t a, size_t b, const char *ascii) {
    size_t n = strlen(ascii);
    if (b - a != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (w->c[a + i] != (uint32_t)(unsigned char)ascii[i]) return 0;
    return 1;
}

// process_digit_article / processDigitArticle: lower, split on whitespace, number words to digits,
// articles dropped, then each remaining word through the contraction table; joined by one space.
static char *digit_article(pyu_version v, pyustr *s) {
    pyu_lower(v, s);
    strbuf out = {0};
    sb_puts(&out, "");
    size_t i = 0;
    int first = 1;
    while (i < s->n) {
        while (i < s->n && pyu_isspace(v, s->c[i])) i++;
        if (i == s->n) break;
        size_t a = i;
        while (i < s->n && !pyu_isspace(v, s->c[i])) i++;
        const char *word = NULL;
        for (size_t k = 0; k < sizeof NUMBERS / sizeof NUMBERS[0] && !word; k++)
            if (word_is(s, a, i, NUMBERS[k][0])) word = NUMBERS[k][1];
        int article = 0;
        for (size_t k = 0; k < 3; k++) article |= word ? !strcmp(word, ARTICLES[k]) : word_is(s, a, i, ARTICLES[k]);
        if (article) continue;
        if (!first) sb_puts(&out, " ");
        first = 0;
        // The contraction table is looked up after the number map; a mapped digit never hits it.
        const char *con = NULL;
        for (size_t k = 0; k < sizeof CONTRACTIONS / sizeof CONTRACTIONS[0] && !con; k++)
            if (word ? !strcmp(word, CONTRACTIONS[k][0]) : word_is(s, a, i, CONTRACTIONS[k][0]))
                con = CONTRACTIONS[k][1];
        if (con) sb_puts(&out, con);
        else if (word) sb_puts(&out, word);
        else {
            pyustr w = {.c = s->c + a, .n = i - a, .cap = i - a};
            char *u = pyustr_utf8(&w);
            sb_puts(&out, u);
            free(u);
        }
    }
    return out.p;
}

char *evalai_answer(const char *text) {
    pyustr s = {0};
    pyustr_set(&s, text);
    // word_tokenize: lower; "," and "?" removed; "'s" -> " 's"; strip.
    pyu_lower(PYU3, &s);
    pyu_replace_char(&s, ',', 0);
    pyu_replace_char(&s, '?', 0);
    pyustr t = {0};
    for (size_t i = 0; i < s.n; i++) {
        if (s.c[i] == '\'' && i + 1 < s.n && s.c[i + 1] == 's') {
            pyustr_push(&t, ' ');
            pyustr_push(&t, '\'');
            pyustr_push(&t, 's');
            i++;
        } else {
            pyustr_push(&t, s.c[i]);
        }
    }
    pyustr_free(&s);
    pyu_strip(PYU3, &t);
    // __call__: newlines and tabs to spaces, strip.
    pyu_replace_char(&t, '\n', ' ');
    pyu_replace_char(&t, '\t', ' ');
    pyu_strip(PYU3, &t);
    punctuation(PYU3, &t);
    char *o = digit_article(PYU3, &t);
    pyustr_free(&t);
    return o;
}

char *vqa_eval_prestrip(const char *text) {
    pyustr s = {0};
    pyustr_set(&s, text);
    pyu_replace_char(&s, '\n', ' ');
    pyu_replace_char(&s, '\t', ' ');
    pyu_strip(PYU2, &s);
    char *o = pyustr_utf8(&s);
    pyustr_free(&s);
    return o;
}

char *vqa_eval_punctuation(const char *text) {
    pyustr s = {0};
    pyustr_set(&s, text);
    punctuation(PYU2, &s);
    char *o = pyustr_utf8(&s);
    pyustr_free(&s);
    return o;
}

char *vqa_eval_digit_article(const char *text) {
    pyustr s = {0};
    pyustr_set(&s, text);
    char *o = digit_article(PYU2, &s);
    pyustr_free(&s);
    return o;
}
