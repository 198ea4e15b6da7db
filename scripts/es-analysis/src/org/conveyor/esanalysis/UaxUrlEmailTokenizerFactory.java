package org.conveyor.esanalysis;

import org.apache.lucene.analysis.Tokenizer;
import org.apache.lucene.analysis.email.UAX29URLEmailTokenizer;
import org.elasticsearch.plugin.Inject;
import org.elasticsearch.plugin.NamedComponent;
import org.elasticsearch.plugin.analysis.TokenizerFactory;
import org.elasticsearch.plugin.settings.AnalysisSettings;
import org.elasticsearch.plugin.settings.IntSetting;

/**
 * Tokenizer {@code uax_url_email}: Unicode word boundaries that keep URLs and e-mail addresses
 * whole (Lucene's UAX29URLEmailTokenizer). The {@code .security} index's {@code email} analyzer
 * uses it.
 */
@NamedComponent("uax_url_email")
public final class UaxUrlEmailTokenizerFactory implements TokenizerFactory {

    /** The tokenizer's settings. */
    @AnalysisSettings
    public interface Settings {
        @IntSetting(path = "max_token_length", defaultValue = 255)
        int maxTokenLength();
    }

    private final int maxTokenLength;

    @Inject
    public UaxUrlEmailTokenizerFactory(Settings settings) {
        int length = settings.maxTokenLength();
        if (length < 1 || length > UAX29URLEmailTokenizer.MAX_TOKEN_LENGTH_LIMIT) {
            throw new IllegalArgumentException("uax_url_email: [max_token_length] must be between 1 and "
                + UAX29URLEmailTokenizer.MAX_TOKEN_LENGTH_LIMIT + ", got " + length);
        }
        this.maxTokenLength = length;
    }

    @Override
    public Tokenizer create() {
        UAX29URLEmailTokenizer tokenizer = new UAX29URLEmailTokenizer();
        tokenizer.setMaxTokenLength(maxTokenLength);
        return tokenizer;
    }
}
