"""Shadow checks compare a cached answer with the site's; a thumbnail URL the site signs afresh at
each read is the same URL whenever it was signed (sgcache.api3.shadow.same_results)."""

from sgcache.api3.shadow import same_results


def test_signed_thumbnail_urls_compare_without_their_signing():
    ours = {"entities": [{"type": "Shot", "id": 1, "image": "https://s3/t/1.jpg?X-Amz-Date=20261205T010000Z"
                                                             "&X-Amz-Expires=900&X-Amz-Signature=aa"}]}
    theirs = {"entities": [{"type": "Shot", "id": 1, "image": "https://s3/t/1.jpg?X-Amz-Date=20261205T011000Z"
                                                               "&X-Amz-Expires=900&X-Amz-Signature=bb"}]}
    assert same_results(ours, theirs)
    cdn = [{"image": "https://cdn/t/1.png?Expires=1&Signature=a"}, {"image": "https://cdn/t/1.png?Expires=2&Signature=b"}]
    assert same_results(cdn[0], cdn[1])


def test_other_differences_still_count():
    assert not same_results({"image": "https://s3/t/1.jpg?Expires=1&Signature=a"},
                            {"image": "https://s3/t/2.jpg?Expires=1&Signature=a"})
    assert not same_results({"code": "a?Expires=1"}, {"code": "b?Expires=1"})
    assert not same_results({"url": "https://x/y?page=1"}, {"url": "https://x/y?page=2"})
