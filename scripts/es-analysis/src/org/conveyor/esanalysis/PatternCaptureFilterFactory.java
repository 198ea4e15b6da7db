package org.conveyor.esanalysis;

import java.util.List;
import java.util.regex.Pattern;

import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.pattern.PatternCaptureGroupTokenFilter;
import org.elasticsearch.plugin.Inject;
import org.elasticsearch.plugin.NamedComponent;
import org.elasticsearch.plugin.analysis.TokenFilterFactory;
import org.elasticsearch.plugin.settings.AnalysisSettings;
import org.elasticsearch.plugin.settings.BooleanSetting;
import org.elasticsearch.plugin.settings.ListSetting;

/**
 * Token filter {@code pattern_capture}: every capture group of every pattern becomes a token
 * (Lucene's PatternCaptureGroupTokenFilter); {@code preserve_original} keeps the input token too.
 * The {@code .security} index's {@code email} filter uses it.
 */
@NamedComponent("pattern_capture")
public final class PatternCaptureFilterFactory implements TokenFilterFactory {

    /** The filter's settings, as Elasticsearch reads them from the index's analysis settings. */
    @AnalysisSettings
    public interface Settings {
        @ListSetting(path = "patterns")
        List<String> patterns();

        @BooleanSetting(path = "preserve_original", defaultValue = true)
        boolean preserveOriginal();
    }

    private final Pattern[] patterns;
    private final boolean preserveOriginal;

    /**
     * Elasticsearch also makes one instance with empty settings for the bare name
     * {@code pattern_capture} (every registered component is instantiated once without settings),
     * so no patterns is refused when a filter is made, not here.
     */
    @Inject
    public PatternCaptureFilterFactory(Settings settings) {
        List<String> sources = settings.patterns();
        this.patterns = new Pattern[sources.size()];
        for (int i = 0; i < sources.size(); i++) {
            this.patterns[i] = Pattern.compile(sources.get(i));
        }
        this.preserveOriginal = settings.preserveOriginal();
    }

    @Override
    public TokenStream create(TokenStream input) {
        if (patterns.length == 0) {
            throw new IllegalArgumentException("pattern_capture needs at least one entry in [patterns]");
        }
        return new PatternCaptureGroupTokenFilter(input, preserveOriginal, patterns);
    }
}
