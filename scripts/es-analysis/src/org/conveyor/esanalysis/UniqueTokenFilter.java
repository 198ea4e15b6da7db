package org.conveyor.esanalysis;

import java.io.IOException;

import org.apache.lucene.analysis.CharArraySet;
import org.apache.lucene.analysis.TokenFilter;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.tokenattributes.CharTermAttribute;
import org.apache.lucene.analysis.tokenattributes.PositionIncrementAttribute;

/**
 * Emits each term once: later tokens with a term already seen are skipped. With
 * {@code onlyOnSamePosition}, the set of seen terms is cleared at every new position, so only
 * duplicates stacked on one position (e.g. a captured group equal to the original) are dropped.
 */
final class UniqueTokenFilter extends TokenFilter {
    private final CharTermAttribute term = addAttribute(CharTermAttribute.class);
    private final PositionIncrementAttribute position = addAttribute(PositionIncrementAttribute.class);
    private final CharArraySet seen = new CharArraySet(8, false);
    private final boolean onlyOnSamePosition;

    UniqueTokenFilter(TokenStream input, boolean onlyOnSamePosition) {
        super(input);
        this.onlyOnSamePosition = onlyOnSamePosition;
    }

    @Override
    public boolean incrementToken() throws IOException {
        while (input.incrementToken()) {
            if (onlyOnSamePosition && position.getPositionIncrement() > 0) {
                seen.clear();
            }
            char[] buffer = term.buffer();
            int length = term.length();
            if (seen.contains(buffer, 0, length)) {
                continue;
            }
            char[] copy = new char[length];
            System.arraycopy(buffer, 0, copy, 0, length);
            seen.add(copy);
            return true;
        }
        return false;
    }

    @Override
    public void reset() throws IOException {
        super.reset();
        seen.clear();
    }
}
