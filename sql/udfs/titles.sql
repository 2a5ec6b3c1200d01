-- MovieLens title helpers, as SQL functions in the movielens schema.
--
-- GroupLens writes titles as "Shawshank Redemption, The (1994)": the release year in
-- parentheses at the end, a leading article moved behind a comma, and alternate (often
-- original-language) titles in parentheses before the year, e.g.
-- "City of Lost Children, The (Cité des enfants perdus, La) (1995)".
-- Regular expressions use character classes ([(] for a literal parenthesis) instead of
-- backslash escapes, so they read the same in Spark SQL string literals and in Java regex.
-- (sqlfluff wants a space between a function's name and its parameter list here.)

-- The release year from a trailing "(1994)"; for a range such as "(2006-2007)" (GroupLens
-- uses an en dash) the first year. Null when the title ends without a year.
create or replace function movielens.title_year (raw_title string)
returns int
comment 'Release year from a MovieLens title''s trailing "(1994)" or "(2006-2007)", else null.'
return try_cast(
    regexp_extract(trim(raw_title), '[(]([0-9]{4})(?: *[-–] *[0-9]{0,4})?[)]$', 1) as int
);

-- The title without its trailing year, whitespace trimmed.
create or replace function movielens.title_without_year (raw_title string)
returns string
comment 'A MovieLens title without its trailing "(1994)" year, trimmed.'
return trim(
    regexp_replace(trim(raw_title), ' *[(][0-9]{4}(?: *[-–] *[0-9]{0,4})?[)]$', '')
);

-- The articles GroupLens moves behind a comma ("Boot, Das"), as a regex alternation. Matched
-- case-sensitively, so "Cry, the Beloved Country" stays as it is. Elided articles (L') are
-- handled apart: no space follows them.
create or replace function movielens.title_articles ()
returns string
comment 'Articles MovieLens moves to the end of a title, as a regex alternation.'
return concat_ws(
    '|',
    'The', 'A', 'An',
    'Les', 'La', 'Le', 'Un', 'Une',
    'Il', 'Lo', 'Gli', 'I', 'Uno', 'Una',
    'El', 'Los', 'Las',
    'Das', 'Der', 'Die', 'Ein', 'Eine',
    'Den', 'Det', 'De', 'Het',
    'O', 'Os', 'As', 'Da'
);

-- Puts a trailing article back in front: "Shawshank Redemption, The" -> "The Shawshank
-- Redemption", "Crow, The: Wicked Prayer" -> "The Crow: Wicked Prayer",
-- "Atalante, L'" -> "L'Atalante" (no space after an elided article).
create or replace function movielens.article_first (title string)
returns string
comment 'Moves a trailing ", The" (or another article) of a title back to the front.'
return regexp_replace(
    regexp_replace(
        title,
        concat('^(.+), (', movielens.title_articles(), ')(: .+)?$'),
        '$2 $1$3'
    ),
    '^(.+), (L''|Dell''|Gl'')(: .+)?$',
    '$2$1$3'
);

-- The same inside alternate titles in parentheses, after an "a.k.a. " if any:
-- "(Cité des enfants perdus, La)" -> "(La Cité des enfants perdus)",
-- "(a.k.a. Gates of Hell, The)" -> "(a.k.a. The Gates of Hell)".
create or replace function movielens.alternate_titles_article_first (alternates string)
returns string
comment 'Moves trailing articles to the front inside each "(...)" alternate title.'
return regexp_replace(
    regexp_replace(
        alternates,
        concat('[(](a[.]k[.]a[.] )?([^()]+), (', movielens.title_articles(), ')[)]'),
        '($1$3 $2)'
    ),
    '[(](a[.]k[.]a[.] )?([^()]+), (L''|Dell''|Gl'')[)]',
    '($1$3$2)'
);

-- A readable title: no year, leading article in front, alternate titles kept in their
-- parentheses with their own articles moved too:
-- "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
--   -> "The City of Lost Children (La Cité des enfants perdus)".
-- The main title is everything before the trailing run of " (...)" groups.
create or replace function movielens.clean_title (raw_title string)
returns string
comment 'A MovieLens title made readable: no year, articles in front, alternate titles kept.'
return nullif(
    trim(
        concat(
            movielens.article_first(
                regexp_extract(
                    movielens.title_without_year(raw_title), '^(.+?)((?: +[(][^()]*[)])*)$', 1
                )
            ),
            movielens.alternate_titles_article_first(
                regexp_extract(
                    movielens.title_without_year(raw_title), '^(.+?)((?: +[(][^()]*[)])*)$', 2
                )
            )
        )
    ),
    ''
);
