-- Every evaluation rewrites the state of the alerts it changed (armed flags, last firing,
-- state_version). None of those columns is indexed, so the new row version can stay on its
-- page (a HOT update, no index entries) when the page has room; with the default fillfactor
-- of 100 the pages were full after the alerts were created and most updates also wrote an
-- entry into each of the table's five indexes. Leave 30 % of each page free for them.
-- Applies to pages written from now on; an existing table gets it at its next rewrite.
ALTER TABLE alerts SET (fillfactor = 70);
